//! Who is asking (authentication) and whether they may (authorization).
//!
//! Users are authenticated by a client certificate the cluster CA issued (`CN` is the user,
//! `O`s the groups, as in Kubernetes), by a bearer token from the server's token file
//! (Kubernetes' static token file format: `token,user,uid,"group1,group2"`), or by a bootstrap
//! token (`bootstrap_token`). Nobody is anonymous; the one public path, the CA certificate at
//! `/shoal/v1/ca`, is served before authentication. Authorization denies by default and
//! allows by role:
//! - `system:masters`: everything;
//! - `shoal:viewers`: get, list and watch of everything but Secrets (metrics included);
//! - `system:nodes` with user `system:node:<name>`: reads what an agent needs, writes only its
//!   own Node and node Lease, status of pods bound to it, and Events (the caller passes the
//!   object so the pod's node can be checked); nothing outside the groups an agent uses, so
//!   not `metrics.k8s.io`'s `nodes` and `pods`;
//! - `system:bootstrappers` (bootstrap tokens): joining (`may_join`), and nothing else;
//! - every authenticated user: discovery, version, OpenAPI, and access reviews of itself.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

pub const MASTERS_GROUP: &str = "system:masters";
pub const VIEWERS_GROUP: &str = "shoal:viewers";
pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The group of every bootstrap token's user.
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
/// A token file larger than this is refused rather than read.
const TOKEN_FILE_BYTES_MAX: u64 = 4 << 20;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|candidate| candidate == group)
    }

    /// The node name, for a node's credential.
    pub fn node_name(&self) -> Option<&str> {
        self.name.strip_prefix(NODE_USER_PREFIX).filter(|_| self.in_group(NODES_GROUP))
    }
}

/// Bearer tokens and the users they stand for.
#[derive(Debug, Clone, Default)]
pub struct TokenAuthenticator {
    users: HashMap<String, User>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading the token file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {path} is larger than {TOKEN_FILE_BYTES_MAX} bytes")]
    TooLarge { path: String },
    #[error("line {line} of the token file is not `token,user,uid[,\"groups\"]`")]
    BadLine { line: usize },
}

impl TokenAuthenticator {
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let display = || path.display().to_string();
        let size =
            std::fs::metadata(path).map_err(|source| TokenFileError::Read { path: display(), source })?.len();
        if size > TOKEN_FILE_BYTES_MAX {
            return Err(TokenFileError::TooLarge { path: display() });
        }
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenFileError::Read { path: display(), source })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TokenFileError> {
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || TokenFileError::BadLine { line: index + 1 };
            let mut fields = line.splitn(4, ',');
            let token = fields.next().filter(|token| !token.is_empty()).ok_or_else(bad)?;
            let name = fields.next().filter(|name| !name.is_empty()).ok_or_else(bad)?;
            let _uid = fields.next().ok_or_else(bad)?;
            let groups = fields
                .next()
                .map(|groups| groups.trim_matches('"').split(',').map(str::trim).filter(|g| !g.is_empty()))
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .collect();
            users.insert(token.to_owned(), User { name: name.to_owned(), groups });
        }
        Ok(Self { users })
    }

    /// The user an `Authorization` header value names, if it is a known bearer token.
    pub fn authenticate(&self, authorization: &str) -> Option<User> {
        let token =
            authorization.strip_prefix("Bearer ").or_else(|| authorization.strip_prefix("bearer "))?;
        self.users.get(token.trim()).cloned()
    }
}

/// What a request would do, as authorization sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    /// The resource's API group, empty for the core group.
    pub group: &'a str,
    /// Empty for non-resource requests (discovery, version, OpenAPI).
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The stored object the request acts on, when there is one (for node checks).
    pub object: Option<&'a Value>,
}

const READ_VERBS: &[&str] = &["get", "list", "watch"];

/// Whether `user` may do what `attributes` describe.
pub fn authorize(user: &User, attributes: &Attributes<'_>) -> bool {
    if user.in_group(MASTERS_GROUP) {
        return true;
    }
    if attributes.resource.is_empty() || attributes.resource == "selfsubjectaccessreviews" {
        return true;
    }
    let reading = READ_VERBS.contains(&attributes.verb);
    if user.in_group(VIEWERS_GROUP) && reading && attributes.resource != "secrets" {
        return true;
    }
    match user.node_name() {
        Some(node) => authorize_node(node, attributes),
        None => false,
    }
}

/// Whether `user` may ask for a node credential (`POST /shoal/v1/join`): bootstrap tokens
/// exist for this, and administrators may do anything.
pub fn may_join(user: &User) -> bool {
    user.in_group(BOOTSTRAPPERS_GROUP) || user.in_group(MASTERS_GROUP)
}

/// The node role: an agent reads what it needs and writes only what is its own.
fn authorize_node(node: &str, attributes: &Attributes<'_>) -> bool {
    let reading = READ_VERBS.contains(&attributes.verb);
    match (attributes.group, attributes.resource) {
        ("", "nodes") => reading || attributes.verb == "create" || attributes.name == node,
        ("coordination.k8s.io", "leases") => {
            attributes.namespace == "kube-node-lease"
                && (reading || attributes.name == node || attributes.verb == "create")
        }
        ("", "pods") => {
            if reading {
                return true;
            }
            let bound_here = attributes
                .object
                .and_then(|pod| pod.pointer("/spec/nodeName"))
                .and_then(Value::as_str)
                .is_some_and(|bound| bound == node);
            bound_here
                && matches!(
                    (attributes.verb, attributes.subresource),
                    ("update" | "patch", "status") | ("delete", "")
                )
        }
        ("" | "events.k8s.io", "events") => matches!(attributes.verb, "create" | "patch" | "update"),
        ("", "services" | "endpoints" | "configmaps" | "secrets" | "namespaces")
        | ("discovery.k8s.io", "endpointslices") => reading,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> User {
        User { name: name.into(), groups: groups.iter().map(|group| (*group).to_owned()).collect() }
    }

    fn check(
        user: &User,
        verb: &str,
        resource: &str,
        subresource: &str,
        name: &str,
        object: Option<&Value>,
        allowed: bool,
    ) {
        let (group, resource) = match resource.split_once('.') {
            Some((resource, group)) => (group, resource),
            None => ("", resource),
        };
        let attributes =
            Attributes { verb, group, resource, subresource, namespace: "default", name, object };
        assert_eq!(
            authorize(user, &attributes),
            allowed,
            "{} {verb} {resource}/{subresource} {name}",
            user.name
        );
    }

    // The roles allow what they promise and deny the rest, including a node touching another
    // node's objects.
    #[test]
    fn roles() {
        let admin = user("admin", &[MASTERS_GROUP]);
        let viewer = user("bob", &[VIEWERS_GROUP]);
        let node = user("system:node:n1", &[NODES_GROUP]);
        let stranger = user("eve", &[]);
        let pod_here = serde_json::json!({"spec": {"nodeName": "n1"}});
        let pod_elsewhere = serde_json::json!({"spec": {"nodeName": "n2"}});
        check(&admin, "delete", "secrets", "", "s", None, true);
        check(&viewer, "list", "pods", "", "", None, true);
        check(&viewer, "get", "secrets", "", "s", None, false);
        check(&viewer, "create", "pods", "", "", None, false);
        check(&node, "update", "nodes", "status", "n1", None, true);
        check(&node, "update", "nodes", "status", "n2", None, false);
        check(&node, "update", "pods", "status", "p", Some(&pod_here), true);
        check(&node, "update", "pods", "status", "p", Some(&pod_elsewhere), false);
        check(&node, "create", "deployments", "", "", None, false);
        check(&stranger, "get", "pods", "", "p", None, false);
        check(&stranger, "get", "", "", "", None, true);
        check(&stranger, "create", "selfsubjectaccessreviews", "", "", None, true);
        // A user claiming the node prefix without the group is not a node.
        check(&user("system:node:n1", &[]), "update", "nodes", "", "n1", None, false);
        // Metrics (`kubectl top`) are for admins and viewers; a node's role is confined to the
        // groups of what an agent reads, so the same plurals elsewhere are not its.
        for metrics in ["nodes.metrics.k8s.io", "pods.metrics.k8s.io"] {
            check(&admin, "list", metrics, "", "", None, true);
            check(&viewer, "list", metrics, "", "", None, true);
            check(&viewer, "get", metrics, "", "n1", None, true);
            check(&node, "list", metrics, "", "", None, false);
            check(&node, "get", metrics, "", "n1", None, false);
            check(&stranger, "list", metrics, "", "", None, false);
        }
        check(&node, "list", "nodes", "", "", None, true);
        check(&node, "list", "endpointslices.discovery.k8s.io", "", "", None, true);
    }

    // A bootstrap token may join and see discovery, and is refused every resource verb, on
    // every kind a node or a viewer could touch; no one else but an admin may join.
    #[test]
    fn bootstrappers_may_only_join() {
        let bootstrapper = user("system:bootstrap:abcdef", &[BOOTSTRAPPERS_GROUP]);
        assert!(may_join(&bootstrapper));
        assert!(may_join(&user("admin", &[MASTERS_GROUP])));
        assert!(!may_join(&user("system:node:n1", &[NODES_GROUP])));
        assert!(!may_join(&user("bob", &[VIEWERS_GROUP])));
        assert!(!may_join(&user("system:bootstrap:abcdef", &[])));
        check(&bootstrapper, "get", "", "", "", None, true);
        let pod = serde_json::json!({"spec": {"nodeName": "system:bootstrap:abcdef"}});
        for resource in
            ["nodes", "leases", "pods", "events", "secrets", "configmaps", "namespaces", "services"]
        {
            for verb in ["get", "list", "watch", "create", "update", "patch", "delete"] {
                check(&bootstrapper, verb, resource, "", "abcdef", Some(&pod), false);
                check(&bootstrapper, verb, resource, "status", "system:bootstrap:abcdef", None, false);
            }
        }
    }

    // The static token file format, with and without groups; malformed lines are errors.
    #[test]
    fn token_file() {
        let tokens = TokenAuthenticator::parse("# comment\nt1,admin,1,\"system:masters,extra\"\nt2,bob,2\n")
            .expect("parses");
        assert_eq!(tokens.authenticate("Bearer t1"), Some(user("admin", &[MASTERS_GROUP, "extra"])));
        assert_eq!(tokens.authenticate("Bearer t2"), Some(user("bob", &[])));
        assert_eq!(tokens.authenticate("Bearer nope"), None);
        assert_eq!(tokens.authenticate("Basic t1"), None);
        assert!(TokenAuthenticator::parse(",admin,1").is_err());
        assert!(TokenAuthenticator::parse("t3").is_err());
    }
}
