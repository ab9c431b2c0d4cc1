//! Which controllers run: kube-controller-manager's `--controllers` list, with its names.
//!
//! The list is read as Kubernetes reads it: `*` turns on every controller, `name` turns one on,
//! `-name` turns one off, and the first entry that names a controller decides for it (so
//! `*,-nodelifecycle` runs all but node lifecycle). Without `*`, only the named ones run.
//! Benchmarks use it as kube-scheduler's scheduler_perf does: hollow nodes renew no Lease, so
//! node lifecycle must not run there, or it would taint them all unreachable.

use std::fmt;

/// The controllers shoal has, by their kube-controller-manager names. `endpoint` and
/// `endpointslice` are one controller in shoal (it writes both kinds): it runs unless both are
/// turned off.
pub const CONTROLLER_NAMES: [&str; 8] = [
    "deployment",
    "endpoint",
    "endpointslice",
    "garbagecollector",
    "horizontalpodautoscaling",
    "namespace",
    "nodelifecycle",
    "replicaset",
];

/// A `--controllers` list, checked: every entry is `*`, a known name or a known name after `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    entries: Vec<String>,
}

/// An entry of a `--controllers` list that names no controller shoal has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not in the list of known controllers ({})", CONTROLLER_NAMES.join(", "))]
pub struct UnknownController {
    pub entry: String,
}

impl Selection {
    /// Checks `entries` (empty entries are skipped, as a trailing comma leaves one).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, UnknownController> {
        let mut checked = Vec::new();
        for entry in entries.iter().map(|entry| entry.as_ref().trim()).filter(|entry| !entry.is_empty()) {
            let name = entry.strip_prefix('-').unwrap_or(entry);
            if entry != "*" && !CONTROLLER_NAMES.contains(&name) {
                return Err(UnknownController { entry: entry.to_owned() });
            }
            checked.push(entry.to_owned());
        }
        Ok(Selection { entries: checked })
    }

    /// Whether the controller `name` runs: the first entry naming it decides, else `*`.
    pub fn enabled(&self, name: &str) -> bool {
        let mut star = false;
        for entry in &self.entries {
            if entry == name {
                return true;
            }
            if entry.strip_prefix('-') == Some(name) {
                return false;
            }
            star |= entry == "*";
        }
        star
    }
}

impl Default for Selection {
    /// `*`: every controller.
    fn default() -> Self {
        Selection { entries: vec!["*".to_owned()] }
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.entries.join(","))
    }
}

impl std::str::FromStr for Selection {
    type Err = UnknownController;

    /// A comma-separated list, as on kube-controller-manager's command line.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        Selection::parse(&list.split(',').collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(list: &str, expected_on: &[&str]) {
        let selection: Selection = list.parse().expect("a valid list");
        let on: Vec<&str> = CONTROLLER_NAMES.into_iter().filter(|name| selection.enabled(name)).collect();
        assert_eq!(on, expected_on, "--controllers={list}");
    }

    // `*` is everything, `-name` takes one away, a bare name adds one, and the first entry that
    // names a controller wins, as in kube-controller-manager.
    #[test]
    fn lists_read_as_kubernetes_reads_them() {
        let all = CONTROLLER_NAMES.as_slice();
        check("*", all);
        assert_eq!(Selection::default(), "*".parse().expect("valid"));
        let without_lifecycle: Vec<&str> =
            CONTROLLER_NAMES.into_iter().filter(|name| *name != "nodelifecycle").collect();
        check("*,-nodelifecycle", &without_lifecycle);
        check("-nodelifecycle,*", &without_lifecycle);
        check("replicaset,deployment", &["deployment", "replicaset"]);
        check("replicaset,-replicaset", &["replicaset"]);
        check("-replicaset", &[]);
        check("", &[]);
    }

    // A name shoal does not know is refused, with or without its `-`.
    #[test]
    fn unknown_names_are_refused() {
        for list in ["*,-nodelifecyle", "bootstrapsigner", "-", "**"] {
            let error = list.parse::<Selection>().expect_err(list);
            assert!(error.to_string().contains("is not in the list of known controllers"), "{error}");
        }
    }
}
