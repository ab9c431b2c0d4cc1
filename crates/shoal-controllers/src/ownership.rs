//! What the workload controllers share about owning objects: label selectors, controller
//! references, and claiming (adopting matching orphans, releasing owned objects that no
//! longer match), as Kubernetes' `ControllerRefManager` does.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

/// Whether `labels` match `selector`. An empty selector matches everything, as in
/// `metav1.LabelSelectorAsSelector`; an operator Kubernetes does not know matches nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match =
        selector.match_labels.iter().flatten().all(|(key, value)| labels.get(key) == Some(value));
    labels_match
        && selector.match_expressions.iter().flatten().all(|requirement| {
            let value = labels.get(&requirement.key);
            let values = requirement.values.as_deref().unwrap_or_default();
            match requirement.operator.as_str() {
                "In" => value.is_some_and(|value| values.contains(value)),
                "NotIn" => value.is_none_or(|value| !values.contains(value)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether `selector` selects nothing at all: Kubernetes treats a nil selector as matching
/// nothing, and a controller with one owns nothing.
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// The object's controller reference (`controller: true`), if any.
pub fn controller_of(metadata: &ObjectMeta) -> Option<&OwnerReference> {
    metadata.owner_references.iter().flatten().find(|reference| reference.controller == Some(true))
}

/// The reference a controller puts on what it owns: `controller` and `blockOwnerDeletion`
/// set, so that foreground deletion of the owner waits for it.
pub fn controller_reference(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What claiming decides for one candidate object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Owned and matching: the controller's.
    Owned,
    /// A matching orphan: to be adopted (and then the controller's).
    Adopt,
    /// Owned but no longer matching: to be released.
    Release,
    /// Someone else's, or not the controller's business.
    Ignore,
}

/// How the controller with uid `owner_uid` and `selector` (being deleted when
/// `owner_deleting`) stands to an object with `metadata`, as upstream's
/// `ClaimObject`: an owner being deleted adopts nothing, objects being deleted are neither
/// adopted nor released, and an object owned by another controller is left alone.
pub fn claim(
    owner_uid: &str,
    selector: &LabelSelector,
    owner_deleting: bool,
    metadata: &ObjectMeta,
) -> Claim {
    let empty = BTreeMap::new();
    let matches = !selector_is_empty(selector)
        && selector_matches(selector, metadata.labels.as_ref().unwrap_or(&empty));
    let deleting = metadata.deletion_timestamp.is_some();
    match controller_of(metadata) {
        Some(reference) if reference.uid == owner_uid => {
            if matches {
                Claim::Owned
            } else if deleting || owner_deleting {
                // Upstream keeps counting it as not ours, without touching it.
                Claim::Ignore
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matches && !deleting && !owner_deleting => Claim::Adopt,
        None => Claim::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|value| (*value).to_owned()).collect()),
        }
    }

    fn by_labels(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector { match_labels: Some(labels(pairs)), ..LabelSelector::default() }
    }

    fn by_expression(key: &str, operator: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![requirement(key, operator, values)]),
            ..LabelSelector::default()
        }
    }

    fn check(selector: &LabelSelector, pairs: &[(&str, &str)], expected: bool) {
        assert_eq!(selector_matches(selector, &labels(pairs)), expected, "{selector:?} on {pairs:?}");
    }

    // matchLabels and every matchExpressions operator, each against labels that pass and fail.
    #[test]
    fn selectors_match_as_kubernetes_does() {
        check(&by_labels(&[("app", "web")]), &[("app", "web"), ("x", "y")], true);
        check(&by_labels(&[("app", "web")]), &[("app", "db")], false);
        check(&by_expression("tier", "In", &["a", "b"]), &[("tier", "b")], true);
        check(&by_expression("tier", "In", &["a", "b"]), &[], false);
        check(&by_expression("tier", "NotIn", &["a"]), &[], true);
        check(&by_expression("tier", "NotIn", &["a"]), &[("tier", "a")], false);
        check(&by_expression("tier", "Exists", &[]), &[("tier", "")], true);
        check(&by_expression("tier", "DoesNotExist", &[]), &[("tier", "")], false);
        check(&by_expression("tier", "Near", &[]), &[("tier", "")], false);
    }

    // Owned-and-matching is kept, matching orphans are adopted, owned non-matching objects are
    // released, others' objects and objects being deleted are left alone.
    #[test]
    fn claims_follow_the_controller_reference_manager() {
        let selector = LabelSelector { match_labels: Some(labels(&[("app", "web")])), ..Default::default() };
        let owner = ObjectMeta { name: Some("web".into()), uid: Some("rs".into()), ..Default::default() };
        let mine = controller_reference("apps/v1", "ReplicaSet", &owner);
        let theirs = OwnerReference { uid: "other".into(), ..mine.clone() };
        let pod = |owner: Option<&OwnerReference>, app: &str, deleting: bool| ObjectMeta {
            labels: Some(labels(&[("app", app)])),
            owner_references: owner.map(|reference| vec![reference.clone()]),
            deletion_timestamp: deleting.then_some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            )),
            ..Default::default()
        };
        assert_eq!(claim("rs", &selector, false, &pod(Some(&mine), "web", false)), Claim::Owned);
        assert_eq!(claim("rs", &selector, false, &pod(None, "web", false)), Claim::Adopt);
        assert_eq!(claim("rs", &selector, true, &pod(None, "web", false)), Claim::Ignore);
        assert_eq!(claim("rs", &selector, false, &pod(None, "web", true)), Claim::Ignore);
        assert_eq!(claim("rs", &selector, false, &pod(Some(&mine), "db", false)), Claim::Release);
        assert_eq!(claim("rs", &selector, false, &pod(Some(&mine), "db", true)), Claim::Ignore);
        assert_eq!(claim("rs", &selector, false, &pod(Some(&theirs), "web", false)), Claim::Ignore);
        assert_eq!(claim("rs", &LabelSelector::default(), false, &pod(None, "web", false)), Claim::Ignore);
    }
}
