//! Tidy checks run as ordinary tests: the crate graph keeps the directions ARCHITECTURE.md
//! states.

use std::collections::BTreeMap;
use std::path::Path;

/// Which shoal crates each crate may depend on (normal and build dependencies). Dev-only
/// dependencies are not checked against it: they never ship.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "shoal",
        &[
            "shoal-agent",
            "shoal-apiserver",
            "shoal-controllers",
            "shoal-scheduler",
            "shoal-store",
            "shoal-pki",
            "shoal-chaos",
        ],
    ),
    ("shoal-controllers", &["shoal-quantity"]),
    ("shoal-scheduler", &["shoal-quantity"]),
    ("shoal-agent", &["shoal-pki", "shoal-quantity"]),
    ("shoal-apiserver", &["shoal-store", "shoal-pki", "shoal-quantity"]),
    ("shoal-store", &["shoal-chaos"]),
    ("shoal-chaos", &[]),
    ("shoal-pki", &[]),
    ("shoal-quantity", &[]),
    ("shoal-sim", &["shoal-store", "shoal-chaos"]),
];

/// Crates that may appear only as dev-dependencies of others.
const DEV_ONLY: &[&str] = &["shoal-sim"];

/// The shoal crates a manifest names, by section (`dependencies`, `dev-dependencies`, …).
fn shoal_dependencies(manifest: &str) -> BTreeMap<String, Vec<String>> {
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in manifest.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            section = header.to_owned();
        } else if let Some((name, _)) = line.split_once(['=', '.'])
            && name.trim().starts_with("shoal")
            && section.ends_with("dependencies")
        {
            sections.entry(section.clone()).or_default().push(name.trim().to_owned());
        }
    }
    sections
}

// Reads every crate's Cargo.toml and checks each shoal dependency against the allowed
// directions; a new crate must be added to the table, so the table stays the whole picture.
#[test]
fn crate_dependencies_follow_the_architecture() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("crates/ folder");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(crates_dir).expect("crates/ is readable") {
        let path = entry.expect("directory entry").path().join("Cargo.toml");
        let Ok(manifest) = std::fs::read_to_string(&path) else { continue };
        let name =
            path.parent().and_then(Path::file_name).expect("crate folder").to_string_lossy().into_owned();
        let allowed = ALLOWED
            .iter()
            .find(|(crate_name, _)| *crate_name == name)
            .unwrap_or_else(|| panic!("crate {name} is missing from the tidy table"))
            .1;
        for (section, dependencies) in shoal_dependencies(&manifest) {
            if section == "dev-dependencies" {
                continue;
            }
            for dependency in dependencies {
                assert!(
                    allowed.contains(&dependency.as_str()),
                    "{name} depends on {dependency} in [{section}], which ARCHITECTURE.md does not allow"
                );
                assert!(
                    !DEV_ONLY.contains(&dependency.as_str()),
                    "{name} ships with dev-only crate {dependency}"
                );
            }
        }
        seen.push(name);
    }
    assert_eq!(seen.len(), ALLOWED.len(), "crates found: {seen:?}");
}

// The manifest reader itself: a dependency in each section form is found, others are not.
#[test]
fn manifest_reader_finds_shoal_dependencies() {
    let manifest = "[package]\nname = \"shoal-x\"\n[dependencies]\nshoal-store.workspace = true\nserde = \"1\"\n\
                    [dev-dependencies]\nshoal-sim = { path = \"../shoal-sim\" }\n";
    let found = shoal_dependencies(manifest);
    assert_eq!(found.get("dependencies"), Some(&vec!["shoal-store".to_owned()]));
    assert_eq!(found.get("dev-dependencies"), Some(&vec!["shoal-sim".to_owned()]));
    assert_eq!(found.len(), 2);
}
