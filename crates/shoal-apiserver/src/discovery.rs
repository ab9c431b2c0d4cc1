//! Discovery documents: `/version`, aggregated discovery (apidiscovery.k8s.io/v2) at `/api`
//! and `/apis`, and the legacy `APIVersions`, `APIGroupList` and `APIResourceList`.
//!
//! All are computed from `resource::RESOURCES`, so a served type is discoverable by
//! construction.

use serde_json::{Value, json};

use crate::resource::{self, RESOURCES, ResourceType};

/// The Kubernetes version shoal's API corresponds to. The machine's `kubectl` dispatcher picks
/// the kubectl binary from `minor`.
pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "33";
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn version() -> Value {
    json!({
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0-shoal.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none (shoal is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Whether an Accept header asks for aggregated discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.contains("as=APIGroupDiscoveryList") && accept.contains("g=apidiscovery.k8s.io")
}

/// The aggregated document for the core group (`core == true`, at `/api`) or the others.
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = groups()
        .into_iter()
        .filter(|group| group.is_empty() == core)
        .map(|group| {
            let versions: Vec<Value> = resource::group_versions()
                .into_iter()
                .filter(|(g, _)| *g == group)
                .map(|(_, version)| {
                    let resources: Vec<Value> =
                        resources_of(group, version).map(aggregated_resource).collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn aggregated_resource(rt: &ResourceType) -> Value {
    let subresources: Vec<Value> = rt
        .subresources
        .iter()
        .map(|sub| {
            let (group, version, kind) = response_kind(rt, sub.group, sub.version, sub.kind);
            json!({
                "subresource": sub.name,
                "responseKind": {"group": group, "version": version, "kind": kind},
                "verbs": sub.verbs,
            })
        })
        .collect();
    let mut entry = json!({
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": rt.singular,
        "verbs": rt.verbs,
    });
    if !rt.short_names.is_empty() {
        entry["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        entry["categories"] = json!(rt.categories);
    }
    if !subresources.is_empty() {
        entry["subresources"] = Value::Array(subresources);
    }
    entry
}

/// A subresource's kind; empty fields mean "the parent's".
fn response_kind<'a>(
    rt: &'a ResourceType,
    group: &'a str,
    version: &'a str,
    kind: &'a str,
) -> (&'a str, &'a str, &'a str) {
    if kind.is_empty() { (rt.group, rt.version, rt.kind) } else { (group, version, kind) }
}

/// `/api` in the legacy format.
pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

/// `/apis` in the legacy format.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().filter(|group| !group.is_empty()).map(api_group).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn api_group(group: &str) -> Value {
    let versions: Vec<Value> = resource::group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, version)| json!({"groupVersion": format!("{g}/{version}"), "version": version}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": preferred})
}

/// Whether a non-core group is served.
pub fn serves_group(group: &str) -> bool {
    !group.is_empty() && RESOURCES.iter().any(|rt| rt.group == group)
}

/// `/api/v1` or `/apis/<group>/<version>`: an `APIResourceList`, subresources as `pods/status`.
pub fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for rt in resources_of(group, version) {
        let mut entry = json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": rt.verbs,
        });
        if !rt.short_names.is_empty() {
            entry["shortNames"] = json!(rt.short_names);
        }
        if !rt.categories.is_empty() {
            entry["categories"] = json!(rt.categories);
        }
        resources.push(entry);
        for sub in rt.subresources {
            let (sub_group, sub_version, kind) = response_kind(rt, sub.group, sub.version, sub.kind);
            let mut entry = json!({
                "name": format!("{}/{}", rt.plural, sub.name),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": kind,
                "verbs": sub.verbs,
            });
            // kubectl drain looks for the policy group on pods/eviction.
            if sub_group != rt.group || sub_version != rt.version {
                entry["group"] = json!(sub_group);
                entry["version"] = json!(sub_version);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

fn resources_of<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceType> + 'a {
    RESOURCES.iter().filter(move |rt| rt.group == group && rt.version == version)
}

fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for (group, _) in resource::group_versions() {
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    // kubectl drain needs pods/eviction in /api/v1 with the policy group and version, and
    // `kubectl get deploy` needs the short name in aggregated discovery.
    #[test]
    fn documents_carry_what_kubectl_needs() {
        let core = resource_list("", "v1");
        let eviction = core["resources"]
            .as_array()
            .and_then(|list| list.iter().find(|entry| entry["name"] == "pods/eviction"))
            .expect("pods/eviction is listed");
        assert_eq!((eviction["group"].as_str(), eviction["version"].as_str()), (Some("policy"), Some("v1")));
        let apps = aggregated(false);
        let deployments = apps["items"]
            .as_array()
            .and_then(|groups| groups.iter().find(|group| group["metadata"]["name"] == "apps"))
            .and_then(|group| group["versions"][0]["resources"].as_array())
            .and_then(|resources| resources.iter().find(|r| r["resource"] == "deployments"))
            .expect("deployments are in aggregated discovery");
        assert_eq!(deployments["shortNames"], json!(["deploy"]));
        assert_eq!(deployments["scope"], "Namespaced");
        assert!(aggregated(true)["items"].as_array().is_some_and(|items| items.len() == 1));
    }

    // kubectl top looks for metrics.k8s.io/v1beta1 among the groups, then gets and lists
    // NodeMetrics and PodMetrics: both discovery forms list them read-only, with their scopes.
    #[test]
    fn metrics_group_is_discoverable_read_only() {
        let group = aggregated(false)["items"]
            .as_array()
            .and_then(|groups| groups.iter().find(|group| group["metadata"]["name"] == "metrics.k8s.io"))
            .cloned()
            .expect("metrics.k8s.io is in aggregated discovery");
        assert_eq!(group["versions"][0]["version"], "v1beta1");
        let resources = group["versions"][0]["resources"].as_array().expect("resources").clone();
        let summary: Vec<(&str, &str, &str)> = resources
            .iter()
            .map(|r| {
                (
                    r["resource"].as_str().unwrap(),
                    r["responseKind"]["kind"].as_str().unwrap(),
                    r["scope"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(summary, [("nodes", "NodeMetrics", "Cluster"), ("pods", "PodMetrics", "Namespaced")]);
        assert!(resources.iter().all(|r| r["verbs"] == json!(["get", "list"])));
        assert!(api_group_list()["groups"].as_array().is_some_and(|groups| {
            groups.iter().any(|g| {
                g["name"] == "metrics.k8s.io"
                    && g["preferredVersion"]["groupVersion"] == "metrics.k8s.io/v1beta1"
            })
        }));
        let legacy = resource_list("metrics.k8s.io", "v1beta1");
        assert_eq!(legacy["groupVersion"], "metrics.k8s.io/v1beta1");
        let names: Vec<(&str, &str, bool)> = legacy["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .map(|r| {
                (r["name"].as_str().unwrap(), r["kind"].as_str().unwrap(), r["namespaced"].as_bool().unwrap())
            })
            .collect();
        assert_eq!(names, [("nodes", "NodeMetrics", false), ("pods", "PodMetrics", true)]);
    }
}
