//! The kinds the controllers work over, found by API discovery.
//!
//! Discovery rather than a list in this crate: a kind the API server starts serving is then
//! collected and emptied from terminating namespaces without a change here. A static list
//! that missed a kind would let the namespace controller finalize a namespace that still
//! holds objects of it.

use std::fmt;

use kube::Client;
use kube::discovery::{ApiResource, Discovery, Scope, verbs};

/// A kind's identity as ownerReferences and the API name it: its group and kind, without a
/// version (an owner may be named in any version its kind is served at).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKind {
    /// Empty for the core group.
    pub group: String,
    pub kind: String,
}

impl GroupKind {
    pub fn new(group: &str, kind: &str) -> Self {
        Self { group: group.to_owned(), kind: kind.to_owned() }
    }

    /// The group and kind named by an `apiVersion` (`apps/v1`, or `v1` for the core group)
    /// and a `kind`.
    pub fn from_api_version(api_version: &str, kind: &str) -> Self {
        let group = match api_version.split_once('/') {
            Some((group, _version)) => group,
            None => "",
        };
        Self::new(group, kind)
    }

    pub fn is_pod(&self) -> bool {
        self.group.is_empty() && self.kind == "Pod"
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            formatter.write_str(&self.kind)
        } else {
            write!(formatter, "{}.{}", self.kind, self.group)
        }
    }
}

/// One kind the API server serves, at its preferred version.
#[derive(Clone, Debug)]
pub struct ServedKind {
    pub group_kind: GroupKind,
    pub resource: ApiResource,
    pub namespaced: bool,
    /// The verbs discovery lists for it: `list`, `watch`, `delete`, `deletecollection`, ….
    pub verbs: Vec<String>,
}

impl ServedKind {
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|supported| supported == verb)
    }
}

/// The stored kinds the server serves: those that can be listed, watched and deleted
/// (virtual kinds such as SelfSubjectAccessReview, which can only be created, are left out).
pub async fn discover(client: &Client) -> Result<Vec<ServedKind>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut kinds = Vec::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            let served = ServedKind {
                group_kind: GroupKind::new(&resource.group, &resource.kind),
                namespaced: capabilities.scope == Scope::Namespaced,
                verbs: capabilities.operations.clone(),
                resource,
            };
            if [verbs::LIST, verbs::WATCH, verbs::DELETE].iter().all(|verb| served.supports(verb)) {
                kinds.push(served);
            }
        }
    }
    kinds.sort_by(|a, b| a.group_kind.cmp(&b.group_kind));
    Ok(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ownerReference's apiVersion names the group before the slash, and the core group
    // when there is no slash.
    #[test]
    fn group_kind_from_api_version() {
        assert_eq!(
            GroupKind::from_api_version("apps/v1", "ReplicaSet"),
            GroupKind::new("apps", "ReplicaSet")
        );
        assert_eq!(GroupKind::from_api_version("v1", "Pod"), GroupKind::new("", "Pod"));
        assert!(GroupKind::from_api_version("v1", "Pod").is_pod());
        assert_eq!(GroupKind::new("apps", "Deployment").to_string(), "Deployment.apps");
    }
}
