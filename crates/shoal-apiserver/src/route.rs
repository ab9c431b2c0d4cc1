//! What a request path asks for: discovery, OpenAPI, or a verb on a resource.
//!
//! Parsing follows kube-apiserver's request-info rules, including its one ambiguity:
//! `/api/v1/namespaces/foo/status` is the status of namespace `foo`, while
//! `/api/v1/namespaces/foo/pods` lists the pods in it.

use crate::resource::{self, ResourceType};

/// Where a request goes.
#[derive(Debug, PartialEq)]
pub enum Route<'a> {
    Version,
    Health,
    /// `/api`: the core group's versions (or aggregated discovery).
    CoreGroup,
    /// `/apis`: every other group (or aggregated discovery).
    Groups,
    /// `/apis/<group>`.
    Group {
        group: &'a str,
    },
    /// `/api/v1` or `/apis/<group>/<version>`: an `APIResourceList`.
    ResourceList {
        group: &'a str,
        version: &'a str,
    },
    /// `/openapi/v3`.
    OpenApiIndex,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/<group>/<version>`.
    OpenApiGroupVersion {
        group: &'a str,
        version: &'a str,
    },
    /// `/shoal/v1/join`: a node's credential for its public key (`join`).
    Join,
    /// `/shoal/v1/ca`: the cluster CA certificate, served to anyone.
    ClusterCa,
    /// A resource collection or object, possibly a subresource of one.
    Resource(ResourceTarget<'a>),
}

/// A resource request's target.
#[derive(Debug, PartialEq)]
pub struct ResourceTarget<'a> {
    pub resource: &'static ResourceType,
    /// The namespace in the path; `None` for cluster-scoped resources and all-namespace lists.
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub subresource: Option<&'a str>,
}

/// Subresources of a namespace that follow its name directly.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Resolves a path, or `None` if nothing is served there.
pub fn parse(path: &str) -> Option<Route<'_>> {
    let trimmed = path.trim_end_matches('/');
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    match segments.as_slice() {
        ["version"] => Some(Route::Version),
        ["healthz" | "readyz" | "livez", ..] => Some(Route::Health),
        ["api"] => Some(Route::CoreGroup),
        ["apis"] => Some(Route::Groups),
        ["apis", group] => Some(Route::Group { group }),
        ["openapi", "v3"] => Some(Route::OpenApiIndex),
        ["shoal", "v1", "join"] => Some(Route::Join),
        ["shoal", "v1", "ca"] => Some(Route::ClusterCa),
        ["openapi", "v3", "api", version] => Some(Route::OpenApiGroupVersion { group: "", version }),
        ["openapi", "v3", "apis", group, version] => Some(Route::OpenApiGroupVersion { group, version }),
        ["api", version] => served_group_version("", version),
        ["apis", group, version] => served_group_version(group, version),
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => None,
    }
}

fn served_group_version<'a>(group: &'a str, version: &'a str) -> Option<Route<'a>> {
    let served = resource::group_versions().contains(&(group, version));
    served.then_some(Route::ResourceList { group, version })
}

fn resource_route<'a>(group: &str, version: &str, rest: &[&'a str]) -> Option<Route<'a>> {
    let (namespace, rest) = match rest {
        ["namespaces", namespace, next, tail @ ..] if !NAMESPACE_SUBRESOURCES.contains(next) => {
            (Some(*namespace), [&[*next][..], tail].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, subresource] => (*plural, Some(*name), Some(*subresource)),
        _ => return None,
    };
    let resource = resource::find(group, version, plural)?;
    if namespace.is_some() && !resource.namespaced {
        return None;
    }
    if let Some(subresource) = subresource
        && !resource.has_subresource(subresource)
    {
        return None;
    }
    if name.is_some_and(str::is_empty) {
        return None;
    }
    Some(Route::Resource(ResourceTarget { resource, namespace, name, subresource }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (plural, namespace, name, subresource)
    type Resolved<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

    fn check(path: &str, expected: Option<Resolved<'_>>) {
        let actual = match parse(path) {
            Some(Route::Resource(target)) => {
                Some((target.resource.plural, target.namespace, target.name, target.subresource))
            }
            Some(other) => panic!("{path}: expected a resource route, got {other:?}"),
            None => None,
        };
        assert_eq!(actual, expected, "{path}");
    }

    // Resource paths resolve to (plural, namespace, name, subresource), including the
    // namespace ambiguity and paths that must not resolve.
    #[test]
    fn resource_paths() {
        check("/api/v1/pods", Some(("pods", None, None, None)));
        check("/api/v1/namespaces/default/pods", Some(("pods", Some("default"), None, None)));
        check("/api/v1/namespaces/default/pods/web", Some(("pods", Some("default"), Some("web"), None)));
        check(
            "/api/v1/namespaces/default/pods/web/log",
            Some(("pods", Some("default"), Some("web"), Some("log"))),
        );
        check("/api/v1/namespaces", Some(("namespaces", None, None, None)));
        check("/api/v1/namespaces/kube-system", Some(("namespaces", None, Some("kube-system"), None)));
        check("/api/v1/namespaces/foo/status", Some(("namespaces", None, Some("foo"), Some("status"))));
        check("/api/v1/nodes/n1", Some(("nodes", None, Some("n1"), None)));
        check(
            "/apis/apps/v1/namespaces/ns/deployments/web/scale",
            Some(("deployments", Some("ns"), Some("web"), Some("scale"))),
        );
        check("/api/v1/namespaces/ns/nodes/n1", None);
        check("/api/v1/namespaces/ns/pods/web/nope", None);
        check("/api/v1/widgets", None);
        check("/apis/apps/v2/deployments", None);
        check("/api/v1/namespaces/ns/pods/web/log/extra", None);
    }

    // metrics.k8s.io's paths reach its own kinds, not the core ones of the same plural; its
    // nodes are cluster-scoped.
    #[test]
    fn metrics_paths() {
        fn kind(path: &str) -> Option<(&'static str, Option<&str>, Option<&str>)> {
            match parse(path) {
                Some(Route::Resource(target)) => Some((target.resource.kind, target.namespace, target.name)),
                _ => None,
            }
        }
        assert_eq!(kind("/apis/metrics.k8s.io/v1beta1/nodes"), Some(("NodeMetrics", None, None)));
        assert_eq!(kind("/apis/metrics.k8s.io/v1beta1/nodes/a1"), Some(("NodeMetrics", None, Some("a1"))));
        assert_eq!(kind("/apis/metrics.k8s.io/v1beta1/pods"), Some(("PodMetrics", None, None)));
        assert_eq!(
            kind("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web"),
            Some(("PodMetrics", Some("default"), Some("web")))
        );
        assert_eq!(kind("/apis/metrics.k8s.io/v1beta1/namespaces/default/nodes"), None);
        assert_eq!(
            parse("/apis/metrics.k8s.io/v1beta1"),
            Some(Route::ResourceList { group: "metrics.k8s.io", version: "v1beta1" })
        );
    }

    // Discovery, OpenAPI and utility paths.
    #[test]
    fn other_paths() {
        assert_eq!(parse("/version"), Some(Route::Version));
        assert_eq!(parse("/api"), Some(Route::CoreGroup));
        assert_eq!(parse("/apis/"), Some(Route::Groups));
        assert_eq!(parse("/api/v1"), Some(Route::ResourceList { group: "", version: "v1" }));
        assert_eq!(parse("/apis/apps/v1"), Some(Route::ResourceList { group: "apps", version: "v1" }));
        assert_eq!(parse("/apis/apps/v9"), None);
        assert_eq!(
            parse("/openapi/v3/apis/apps/v1"),
            Some(Route::OpenApiGroupVersion { group: "apps", version: "v1" })
        );
        assert_eq!(parse("/shoal/v1/join"), Some(Route::Join));
        assert_eq!(parse("/shoal/v1/ca"), Some(Route::ClusterCa));
        assert_eq!(parse("/shoal/v1"), None);
        assert_eq!(parse("/nope"), None);
    }
}
