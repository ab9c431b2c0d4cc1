//! A container's environment as the kubelet computes it, and the `$(VAR)` expansion of its
//! command and arguments.
//!
//! [`container_env`] follows kubelet's `makeEnvironmentVariables`: the variables of `envFrom`
//! first (each ConfigMap or Secret in turn, keys with the source's prefix), then `env` in
//! order, a later definition of a name replacing the earlier value. A literal `value` is
//! expanded against everything defined so far and the service variables; values from a source
//! are not expanded. Service variables come last, for the names the container did not define.
//!
//! Upstream builds the result from a Go map, so its order is unspecified; here it is the order
//! of first definition, so that the same pod always gets the same environment.
//!
//! The downward API (`fieldRef`, `resourceFieldRef`) is computed here for `volumes` as well:
//! [`field_value`] and [`resource_value`].

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvFromSource, EnvVarSource, ObjectFieldSelector, Pod, ResourceFieldSelector,
    Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The Event reason kubelet records for `envFrom` keys skipped as invalid variable names.
pub const INVALID_VARIABLE_NAMES_REASON: &str = "InvalidEnvironmentVariableNames";

/// The namespace of the Services whose variables every pod gets, enableServiceLinks or not.
pub(crate) const MASTER_SERVICE_NAMESPACE: &str = "default";
/// The Service of [`MASTER_SERVICE_NAMESPACE`] that every pod gets: `KUBERNETES_SERVICE_HOST`
/// is how in-cluster clients find the API.
const MASTER_SERVICE_NAME: &str = "kubernetes";

/// One nano-unit per unit: quantities are computed in 10^-9 units.
const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// The ConfigMaps and Secrets of a pod's namespace that the agent has.
///
/// To ensure correctness, an implementation:
/// - answers for the pod's namespace only: `name` is never qualified;
/// - returns `None` only when the object does not exist (kubelet tells "not found" apart from
///   "could not fetch"; an agent that could not fetch must not call [`container_env`] or
///   [`prepare_volumes`](crate::volumes::prepare_volumes), since an optional object would
///   then be silently left out);
/// - returns the same object for the same name within one call of either.
pub trait ConfigSource {
    fn config_map(&self, name: &str) -> Option<&ConfigMap>;
    fn secret(&self, name: &str) -> Option<&Secret>;
}

/// What the downward API and the service links need beyond the Pod object: what the node
/// knows about the pod and itself.
#[derive(Clone, Copy, Debug)]
pub struct PodFacts<'a> {
    /// The pod's primary IP (`status.podIP`), empty before the sandbox has one.
    pub pod_ip: &'a str,
    /// Every IP of the pod, primary first (`status.podIPs`); empty means just `pod_ip`.
    pub pod_ips: &'a [String],
    /// The node's primary IP (`status.hostIP`).
    pub host_ip: &'a str,
    /// Every IP of the node, primary first (`status.hostIPs`); empty means just `host_ip`.
    pub host_ips: &'a [String],
    /// The node the pod runs on (`spec.nodeName`).
    pub node_name: &'a str,
    /// The pod's service account (`spec.serviceAccountName`, `default` when unset).
    pub service_account: &'a str,
    /// The node's allocatable resources: a container without a cpu, memory or
    /// ephemeral-storage limit sees these as its limits through `resourceFieldRef`.
    pub allocatable: &'a BTreeMap<String, Quantity>,
    /// The Services the agent knows, of any namespace: [`container_env`] links those of the
    /// pod's namespace (unless `enableServiceLinks` is false) and `default/kubernetes`.
    pub services: &'a [Service],
}

/// A container's environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerEnv {
    /// Each variable once, in the order of its first definition; service variables last.
    pub variables: Vec<(String, String)>,
    /// The `envFrom` sources some keys of which were skipped as invalid variable names, in
    /// `envFrom` order: the caller records an [`INVALID_VARIABLE_NAMES_REASON`] Event for each.
    pub skipped: Vec<SkippedKeys>,
}

/// The keys of one `envFrom` source that are not valid variable names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKeys {
    pub kind: EnvFromKind,
    pub namespace: String,
    pub name: String,
    /// With the prefix, sorted.
    pub keys: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvFromKind {
    ConfigMap,
    Secret,
}

/// Why a container's environment could not be computed. The message is kubelet's: the pod
/// worker shows it as the container's `CreateContainerConfigError`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap {name:?} not found")]
    ConfigMapNotFound { name: String },
    #[error("secret {name:?} not found")]
    SecretNotFound { name: String },
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound { namespace: String, name: String, key: String },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound { namespace: String, name: String, key: String },
    /// Kubernetes passes a Secret's bytes through; a process environment here is text.
    #[error("key {key} in Secret {namespace}/{name} is not valid UTF-8")]
    SecretValueNotUtf8 { namespace: String, name: String, key: String },
    #[error(transparent)]
    DownwardApi(#[from] DownwardApiError),
}

/// Why a `fieldRef` or `resourceFieldRef` has no value; the messages are upstream's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DownwardApiError {
    #[error("unsupported pod version: {api_version}")]
    UnsupportedVersion { api_version: String },
    #[error("field label not supported: {field_path}")]
    UnsupportedFieldPath { field_path: String },
    #[error("unsupported container resource : {resource}")]
    UnsupportedResource { resource: String },
    #[error("container {name} not found")]
    ContainerNotFound { name: String },
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {quantity:?}"
    )]
    InvalidQuantity { quantity: String },
}

impl SkippedKeys {
    /// The message of kubelet's Event for these keys.
    pub fn event_message(&self) -> String {
        let kind = match self.kind {
            EnvFromKind::ConfigMap => "configMap",
            EnvFromKind::Secret => "secret",
        };
        format!(
            "Keys [{}] from the EnvFrom {kind} {}/{} were skipped since they are considered invalid environment variable names.",
            self.keys.join(", "),
            self.namespace,
            self.name
        )
    }
}

/// The environment of `container` in `pod`, or the reason it cannot be started.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    source: &impl ConfigSource,
) -> Result<ContainerEnv, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let service_variables = service_env(linked_services(pod, facts.services));
    let mut env = OrderedEnv::default();
    let mut skipped = Vec::new();

    for env_from in container.env_from.iter().flatten() {
        let Some(EnvFromData { kind, name, pairs }) = env_from_pairs(source, namespace, env_from)? else {
            continue;
        };
        let prefix = env_from.prefix.as_deref().unwrap_or_default();
        let mut invalid = Vec::new();
        for (key, value) in pairs {
            let variable = format!("{prefix}{key}");
            if is_env_var_name(&variable) {
                env.set(variable, value);
            } else {
                invalid.push(variable);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            let name = name.to_owned();
            skipped.push(SkippedKeys { kind, namespace: namespace.to_owned(), name, keys: invalid });
        }
    }

    for variable in container.env.iter().flatten() {
        let value = match (variable.value.as_deref(), &variable.value_from) {
            (Some(text), _) if !text.is_empty() => {
                expand_with(text, |name| env.get(name).or_else(|| lookup(&service_variables, name)))
            }
            (_, Some(value_from)) => {
                // An optional source that is absent leaves the variable undefined.
                let Some(value) = source_value(pod, container, facts, source, value_from)? else { continue };
                value
            }
            _ => String::new(),
        };
        env.set(variable.name.clone(), value);
    }

    let OrderedEnv { mut variables, index } = env;
    variables.extend(service_variables.into_iter().filter(|(name, _)| !index.contains_key(name)));
    Ok(ContainerEnv { variables, skipped })
}

/// The pairs of one `envFrom` object, keys without the prefix.
struct EnvFromData<'s> {
    kind: EnvFromKind,
    name: &'s str,
    pairs: Vec<(&'s str, String)>,
}

/// The key-value pairs of an `envFrom` source with its kind and name; `None` for an absent
/// optional object (or a source of neither kind).
fn env_from_pairs<'s>(
    source: &'s impl ConfigSource,
    namespace: &str,
    env_from: &'s EnvFromSource,
) -> Result<Option<EnvFromData<'s>>, EnvError> {
    if let Some(reference) = &env_from.config_map_ref {
        let Some(config_map) = source.config_map(&reference.name) else {
            if reference.optional == Some(true) {
                return Ok(None);
            }
            return Err(EnvError::ConfigMapNotFound { name: reference.name.clone() });
        };
        let data = config_map.data.iter().flatten();
        let pairs = data.map(|(key, value)| (key.as_str(), value.clone())).collect();
        Ok(Some(EnvFromData { kind: EnvFromKind::ConfigMap, name: &reference.name, pairs }))
    } else if let Some(reference) = &env_from.secret_ref {
        let Some(secret) = source.secret(&reference.name) else {
            if reference.optional == Some(true) {
                return Ok(None);
            }
            return Err(EnvError::SecretNotFound { name: reference.name.clone() });
        };
        let mut pairs = Vec::new();
        for (key, value) in secret.data.iter().flatten() {
            pairs.push((key.as_str(), secret_text(namespace, &reference.name, key, &value.0)?));
        }
        Ok(Some(EnvFromData { kind: EnvFromKind::Secret, name: &reference.name, pairs }))
    } else {
        Ok(None)
    }
}

/// The value of an env var's `valueFrom`; `None` when an optional object or key is absent.
fn source_value(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    source: &impl ConfigSource,
    value_from: &EnvVarSource,
) -> Result<Option<String>, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(selector) = &value_from.field_ref {
        Ok(Some(field_value(pod, facts, selector)?))
    } else if let Some(selector) = &value_from.resource_field_ref {
        Ok(Some(resource_value(pod, Some(container), facts, selector)?))
    } else if let Some(selector) = &value_from.config_map_key_ref {
        config_map_key(source, namespace, &selector.name, &selector.key, selector.optional)
    } else if let Some(selector) = &value_from.secret_key_ref {
        secret_key(source, namespace, &selector.name, &selector.key, selector.optional)
    } else {
        Ok(Some(String::new()))
    }
}

/// `text` with each `$(NAME)` replaced by the value of `NAME` in `env` (the last definition
/// when there are several), as kubelet expands a container's command and arguments: `$$` is a
/// literal `$`, and a reference to an undefined name stays as written.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    expand_with(text, |name| lookup(env, name))
}

/// The Docker-links variables of `services` in their order, as kubelet's `FromServices`:
/// `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT` (the first port), `<NAME>_SERVICE_PORT_<PORT>`
/// for each named port, `<NAME>_PORT` (the first port's URL) and, per port,
/// `<NAME>_PORT_<port>_<PROTOCOL>` with its `_PROTO`, `_PORT` and `_ADDR`. Services without a
/// ClusterIP (headless, ExternalName) have none. Which Services a pod sees is
/// [`container_env`]'s concern.
pub fn service_env<'s>(services: impl IntoIterator<Item = &'s Service>) -> Vec<(String, String)> {
    let mut variables = Vec::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
        if cluster_ip.is_empty() || cluster_ip == "None" {
            continue;
        }
        let prefix = service_variable_name(service.metadata.name.as_deref().unwrap_or_default());
        let ports = spec.ports.as_deref().unwrap_or_default();
        variables.push((format!("{prefix}_SERVICE_HOST"), cluster_ip.to_owned()));
        if let Some(first) = ports.first() {
            variables.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        }
        for port in ports {
            if let Some(name) = port.name.as_deref().filter(|name| !name.is_empty()) {
                let variable = format!("{prefix}_SERVICE_PORT_{}", service_variable_name(name));
                variables.push((variable, port.port.to_string()));
            }
        }
        for (index, port) in ports.iter().enumerate() {
            let protocol = port.protocol.as_deref().filter(|protocol| !protocol.is_empty()).unwrap_or("TCP");
            let scheme = protocol.to_lowercase();
            let url = format!("{scheme}://{cluster_ip}:{}", port.port);
            if index == 0 {
                // Docker special-cases the first port.
                variables.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
            variables.push((format!("{port_prefix}_PROTO"), scheme));
            variables.push((format!("{port_prefix}_PORT"), port.port.to_string()));
            variables.push((format!("{port_prefix}_ADDR"), cluster_ip.to_owned()));
            variables.push((port_prefix, url));
        }
    }
    variables
}

/// The value of a `fieldRef` of `pod`, as kubelet's `podFieldSelectorRuntimeValue`: metadata
/// from the Pod, the rest from `facts`. Whole `metadata.labels` and `metadata.annotations`
/// (downward API volumes only; validation keeps them out of env) are `key="value"` lines.
pub(crate) fn field_value(
    pod: &Pod,
    facts: &PodFacts,
    selector: &ObjectFieldSelector,
) -> Result<String, DownwardApiError> {
    let api_version = selector.api_version.as_deref().unwrap_or("v1");
    if api_version != "v1" {
        return Err(DownwardApiError::UnsupportedVersion { api_version: api_version.to_owned() });
    }
    let path = selector.field_path.as_str();
    let metadata = &pod.metadata;
    let unsupported = || DownwardApiError::UnsupportedFieldPath { field_path: path.to_owned() };
    if let Some((map, key)) = subscripted(path) {
        let map = match map {
            "metadata.labels" => &metadata.labels,
            "metadata.annotations" => &metadata.annotations,
            _ => return Err(unsupported()),
        };
        return Ok(map.as_ref().and_then(|map| map.get(key)).cloned().unwrap_or_default());
    }
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let value = match path {
        "metadata.name" => text(&metadata.name),
        "metadata.namespace" => text(&metadata.namespace),
        "metadata.uid" => text(&metadata.uid),
        "metadata.labels" => format_map(metadata.labels.as_ref()),
        "metadata.annotations" => format_map(metadata.annotations.as_ref()),
        // `spec.host` is what old v1 clients call `spec.nodeName`.
        "spec.nodeName" | "spec.host" => facts.node_name.to_owned(),
        "spec.serviceAccountName" => facts.service_account.to_owned(),
        "status.podIP" => facts.pod_ips.first().map_or(facts.pod_ip, String::as_str).to_owned(),
        "status.podIPs" => all_or_one(facts.pod_ips, facts.pod_ip),
        "status.hostIP" => facts.host_ips.first().map_or(facts.host_ip, String::as_str).to_owned(),
        "status.hostIPs" => all_or_one(facts.host_ips, facts.host_ip),
        _ => return Err(unsupported()),
    };
    Ok(value)
}

/// The value of a `resourceFieldRef`, as kubelet's `ExtractContainerResourceValue` over a
/// container whose unset (or zero) cpu, memory and ephemeral-storage limits are the node's
/// allocatable: the quantity divided by the divisor (1 when unset or zero), rounded up, and
/// "0" for a quantity that is not positive. The container is the selector's `containerName`
/// (among the pod's containers, then its init containers), else `container`.
pub(crate) fn resource_value(
    pod: &Pod,
    container: Option<&Container>,
    facts: &PodFacts,
    selector: &ResourceFieldSelector,
) -> Result<String, DownwardApiError> {
    let name = selector.container_name.as_deref().unwrap_or_default();
    let container = if name.is_empty() { container } else { find_container(pod, name) };
    let container = container.ok_or_else(|| DownwardApiError::ContainerNotFound { name: name.to_owned() })?;
    let divisor = match &selector.divisor {
        Some(divisor) => quantity(divisor)?,
        None => 0,
    };
    let divisor = if divisor == 0 { NANOS_PER_UNIT } else { divisor };
    let unsupported = || DownwardApiError::UnsupportedResource { resource: selector.resource.clone() };
    let (limits, resource) = match selector.resource.split_once('.') {
        Some(("limits", resource)) => (true, resource),
        Some(("requests", resource)) => (false, resource),
        _ => return Err(unsupported()),
    };
    if !matches!(resource, "cpu" | "memory" | "ephemeral-storage") && !resource.starts_with("hugepages-") {
        return Err(unsupported());
    }
    let resources = container.resources.as_ref();
    let list = if limits {
        resources.and_then(|resources| resources.limits.as_ref())
    } else {
        resources.and_then(|resources| resources.requests.as_ref())
    };
    let mut value = match list.and_then(|list| list.get(resource)) {
        Some(value) => quantity(value)?,
        None => 0,
    };
    // Hugepages are never overcommitted, so they always have a limit and no default.
    if limits
        && value == 0
        && !resource.starts_with("hugepages-")
        && let Some(allocatable) = facts.allocatable.get(resource)
    {
        value = quantity(allocatable)?;
    }
    Ok(ceiling_ratio(value, divisor).to_string())
}

/// Each name once, in the order of its first definition, with its latest value.
#[derive(Default)]
struct OrderedEnv {
    variables: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl OrderedEnv {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&position) => self.variables[position].1 = value,
            None => {
                self.index.insert(name.clone(), self.variables.len());
                self.variables.push((name, value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&position| self.variables[position].1.as_str())
    }
}

/// The Services a pod is linked to, by name: `default/kubernetes` always, and those of the
/// pod's namespace unless `enableServiceLinks` is false (one of the pod's namespace named
/// `kubernetes` wins), as kubelet's `getServiceEnvVarMap`.
fn linked_services<'s>(pod: &Pod, services: &'s [Service]) -> Vec<&'s Service> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let links = pod.spec.as_ref().and_then(|spec| spec.enable_service_links) != Some(false);
    let mut linked: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let service_namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        if service_namespace == MASTER_SERVICE_NAMESPACE && name == MASTER_SERVICE_NAME {
            linked.entry(name).or_insert(service);
        } else if service_namespace == namespace && links {
            linked.insert(name, service);
        }
    }
    linked.into_values().collect()
}

/// A Service or port name as a variable name: upper case, `-` and `.` as `_`, and a leading
/// `_` before a digit.
fn service_variable_name(name: &str) -> String {
    let name = name.to_uppercase().replace(['-', '.'], "_");
    if name.starts_with(|character: char| character.is_ascii_digit()) { format!("_{name}") } else { name }
}

/// Whether `name` may be an environment variable name, as upstream's `IsEnvVarName`:
/// `[-._a-zA-Z][-._a-zA-Z0-9]*`.
fn is_env_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let allowed = |byte: u8| byte.is_ascii_alphabetic() || matches!(byte, b'-' | b'.' | b'_');
    bytes.next().is_some_and(allowed) && bytes.all(|byte| allowed(byte) || byte.is_ascii_digit())
}

fn lookup<'e>(env: &'e [(String, String)], name: &str) -> Option<&'e str> {
    env.iter().rev().find(|(defined, _)| defined == name).map(|(_, value)| value.as_str())
}

/// The expansion of upstream's `third_party/forked/golang/expansion`: `$$` is `$`, `$(NAME)`
/// is `mapping(NAME)` or stays as written when unmapped, an unterminated `$(` and any other
/// `$x` stay as written. Upstream copies the byte after a lone `$` as if it were a character,
/// which garbles a non-ASCII one; here it is copied whole.
fn expand_with<'v>(input: &str, mapping: impl Fn(&str) -> Option<&'v str>) -> String {
    let bytes = input.as_bytes();
    let mut expanded = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            expanded.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            // How many bytes after the `$` the operator consumed.
            let consumed = match rest.as_bytes()[0] {
                b'$' => {
                    expanded.push('$');
                    1
                }
                b'(' => match rest[1..].find(')') {
                    Some(length) => {
                        let name = &rest[1..1 + length];
                        match mapping(name) {
                            Some(value) => expanded.push_str(value),
                            None => {
                                expanded.push_str("$(");
                                expanded.push_str(name);
                                expanded.push(')');
                            }
                        }
                        length + 2
                    }
                    None => {
                        expanded.push_str("$(");
                        1
                    }
                },
                _ => {
                    let next = rest.chars().next().expect("rest is not empty");
                    expanded.push('$');
                    expanded.push(next);
                    next.len_utf8()
                }
            };
            cursor += consumed;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    expanded.push_str(&input[checkpoint..]);
    expanded
}

fn config_map_key(
    source: &impl ConfigSource,
    namespace: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, EnvError> {
    let optional = optional == Some(true);
    let Some(config_map) = source.config_map(name) else {
        return if optional { Ok(None) } else { Err(EnvError::ConfigMapNotFound { name: name.to_owned() }) };
    };
    match config_map.data.as_ref().and_then(|data| data.get(key)) {
        Some(value) => Ok(Some(value.clone())),
        None if optional => Ok(None),
        None => Err(EnvError::ConfigMapKeyNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key: key.to_owned(),
        }),
    }
}

fn secret_key(
    source: &impl ConfigSource,
    namespace: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, EnvError> {
    let optional = optional == Some(true);
    let Some(secret) = source.secret(name) else {
        return if optional { Ok(None) } else { Err(EnvError::SecretNotFound { name: name.to_owned() }) };
    };
    match secret.data.as_ref().and_then(|data| data.get(key)) {
        Some(value) => secret_text(namespace, name, key, &value.0).map(Some),
        None if optional => Ok(None),
        None => Err(EnvError::SecretKeyNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key: key.to_owned(),
        }),
    }
}

fn secret_text(namespace: &str, name: &str, key: &str, bytes: &[u8]) -> Result<String, EnvError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| EnvError::SecretValueNotUtf8 {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        key: key.to_owned(),
    })
}

/// `map['key']` as (`map`, `key`), as upstream's `SplitMaybeSubscriptedPath`.
fn subscripted(path: &str) -> Option<(&str, &str)> {
    let (map, key) = path.strip_suffix("']")?.split_once("['")?;
    (!map.is_empty()).then_some((map, key))
}

/// Upstream's `FormatMap`: `key="value"` lines in key order, the value quoted as Go's `%q`.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    let lines: Vec<String> =
        map.into_iter().flatten().map(|(key, value)| format!("{key}={}", go_quote(value))).collect();
    lines.join("\n")
}

fn all_or_one(all: &[String], one: &str) -> String {
    if all.is_empty() { one.to_owned() } else { all.join(",") }
}

fn find_container<'p>(pod: &'p Pod, name: &str) -> Option<&'p Container> {
    let spec = pod.spec.as_ref()?;
    let init_containers = spec.init_containers.iter().flatten();
    spec.containers.iter().chain(init_containers).find(|container| container.name == name)
}

fn quantity(value: &Quantity) -> Result<i128, DownwardApiError> {
    parse_quantity(&value.0).ok_or_else(|| DownwardApiError::InvalidQuantity { quantity: value.0.clone() })
}

/// `⌈value / divisor⌉` for a positive value and divisor, else 0; saturated at `i64::MAX` as
/// upstream's `convertQuantityToString`.
fn ceiling_ratio(value: i128, divisor: i128) -> i64 {
    if value <= 0 || divisor <= 0 {
        return 0;
    }
    let ratio = value / divisor + i128::from(value % divisor != 0);
    i64::try_from(ratio).unwrap_or(i64::MAX)
}

/// A resource.Quantity in nano-units, as shoal-quantity reads it.
fn parse_quantity(text: &str) -> Option<i128> {
    shoal_quantity::Quantity::parse(text).map(shoal_quantity::Quantity::nanos)
}

/// A string as Go's `%q` prints it. Non-ASCII characters count as printable unless they are
/// control or whitespace characters, a close approximation of Go's `unicode.IsPrint`.
fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{b}' => quoted.push_str("\\v"),
            ' ' => quoted.push(' '),
            _ if character < ' ' || character == '\u{7f}' => {
                quoted.push_str(&format!("\\x{:02x}", u32::from(character)));
            }
            _ if !character.is_control() && !character.is_whitespace() => quoted.push(character),
            _ if u32::from(character) < 0x10000 => {
                quoted.push_str(&format!("\\u{:04x}", u32::from(character)));
            }
            _ => quoted.push_str(&format!("\\U{:08x}", u32::from(character))),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use serde_json::{Value, json};

    use super::*;

    /// The ConfigMaps and Secrets of `default` in these tests.
    #[derive(Default)]
    pub(crate) struct Objects {
        pub(crate) config_maps: BTreeMap<String, ConfigMap>,
        pub(crate) secrets: BTreeMap<String, Secret>,
    }

    impl ConfigSource for Objects {
        fn config_map(&self, name: &str) -> Option<&ConfigMap> {
            self.config_maps.get(name)
        }

        fn secret(&self, name: &str) -> Option<&Secret> {
            self.secrets.get(name)
        }
    }

    impl Objects {
        pub(crate) fn with_config_map(mut self, name: &str, data: &[(&str, &str)]) -> Self {
            let data = data.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
            let config_map = ConfigMap { data: Some(data), ..ConfigMap::default() };
            self.config_maps.insert(name.to_owned(), config_map);
            self
        }

        pub(crate) fn with_secret(mut self, name: &str, data: &[(&str, &[u8])]) -> Self {
            let data =
                data.iter().map(|(key, value)| (key.to_string(), ByteString(value.to_vec()))).collect();
            self.secrets.insert(name.to_owned(), Secret { data: Some(data), ..Secret::default() });
            self
        }
    }

    /// Facts of a pod with one IPv4 address on a node with 4 cpus, 8Gi of memory and 100Gi
    /// of ephemeral storage allocatable.
    pub(crate) fn with_facts<T>(services: &[Service], check: impl FnOnce(&PodFacts) -> T) -> T {
        let allocatable: BTreeMap<String, Quantity> =
            [("cpu", "4"), ("memory", "8Gi"), ("ephemeral-storage", "100Gi")]
                .into_iter()
                .map(|(name, value)| (name.to_owned(), Quantity(value.to_owned())))
                .collect();
        let facts = PodFacts {
            pod_ip: "10.1.0.7",
            pod_ips: &[],
            host_ip: "192.168.0.3",
            host_ips: &[],
            node_name: "node-a",
            service_account: "builder",
            allocatable: &allocatable,
            services,
        };
        check(&facts)
    }

    /// A pod `web` in `default` whose first container is `app` with `container` merged in,
    /// and a second container `sidecar` with a 2 cpu limit.
    pub(crate) fn pod_with(container: Value) -> Pod {
        let mut app = json!({"name": "app", "image": "app:1"});
        app.as_object_mut().unwrap().extend(container.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "metadata": {
                "name": "web", "namespace": "default", "uid": "uid-web",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"note": "say \"hi\"\n", "literal": "$(CFG_PORT)"},
            },
            "spec": {
                "containers": [app, {"name": "sidecar", "resources": {"limits": {"cpu": "2"}}}],
            },
        }))
        .unwrap()
    }

    fn objects() -> Objects {
        Objects::default()
            .with_config_map("app-config", &[("LOG_LEVEL", "debug"), ("PORT", "8080")])
            .with_secret("db", &[("password", b"hunter2"), ("raw", &[0xff, 0xfe])])
    }

    /// The environment of `app` with `container` merged in, or the error's message.
    fn env_of(container: Value) -> Result<Vec<(String, String)>, String> {
        let pod = pod_with(container);
        let app = &pod.spec.as_ref().unwrap().containers[0];
        with_facts(&[], |facts| container_env(&pod, app, facts, &objects()))
            .map(|env| env.variables)
            .map_err(|error| error.to_string())
    }

    /// The value of the variable `V` defined by `value_from`, `None` when it is left out.
    fn value_from(value_from: Value) -> Result<Option<String>, String> {
        let variables = env_of(json!({"env": [{"name": "V", "valueFrom": value_from}]}))?;
        Ok(variables.into_iter().find(|(name, _)| name == "V").map(|(_, value)| value))
    }

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    #[test]
    fn expansion_follows_kubernetes() {
        // Each input expands against a fixed set of variables as upstream's expansion does:
        // escapes, undefined and malformed references, no recursion, no shell syntax.
        let env = pairs(&[("A", "alpha"), ("B", "beta"), ("EMPTY", ""), ("REF", "$(A)")]);
        let cases = [
            ("", ""),
            ("plain", "plain"),
            ("$(A)", "alpha"),
            ("$(A)/$(B)", "alpha/beta"),
            ("[$(A)$(A)]", "[alphaalpha]"),
            ("x$(EMPTY)y", "xy"),
            ("$(REF)", "$(A)"),
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            ("$(UNDEFINED)-$(B)", "$(UNDEFINED)-beta"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$alpha"),
            ("$$$$(A)", "$$(A)"),
            ("$$$$$(UNDEFINED)", "$$$(UNDEFINED)"),
            ("cost: $$5", "cost: $5"),
            ("$A", "$A"),
            ("${A}", "${A}"),
            ("$A)", "$A)"),
            ("$?-$!", "$?-$!"),
            ("$(A", "$(A"),
            ("$(B)..$(", "beta..$("),
            ("--$($(--", "--$($(--"),
            ("$(A$(B))", "$(A$(B))"),
            ("$(a$$b)", "$(a$$b)"),
            ("back\\$(A)", "back\\alpha"),
            ("end$", "end$"),
            ("$", "$"),
            ("$é$(B)", "$ébeta"),
            ("line\n$(A)", "line\nalpha"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, &env), expected, "{input:?}");
        }
    }

    #[test]
    fn expansion_takes_the_last_definition() {
        // A name defined twice expands to its later value, as a Go map built in order would.
        let env = pairs(&[("A", "first"), ("A", "second")]);
        assert_eq!(expand("$(A)", &env), "second");
    }

    #[test]
    fn env_from_comes_first_and_env_overrides_it() {
        // envFrom's variables (prefixed, in source order, keys sorted) come first; env follows
        // in order, expanding against everything before it and replacing a prefixed key in place.
        let source = objects().with_secret("clean", &[("password", b"hunter2")]);
        let pod = pod_with(json!({
            "envFrom": [
                {"configMapRef": {"name": "app-config"}, "prefix": "CFG_"},
                {"secretRef": {"name": "clean"}, "prefix": "DB_"},
            ],
            "env": [
                {"name": "URL", "value": "http://localhost:$(CFG_PORT)/$(DB_password)"},
                {"name": "CFG_PORT", "value": "9090"},
                {"name": "LATE", "value": "$(CFG_PORT) $(EARLY)"},
                {"name": "EARLY", "value": "defined after its use"},
                {"name": "EMPTY"},
                {"name": "FROM_KEY", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "PORT"}}},
                {"name": "NOT_EXPANDED", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['literal']"}}},
            ],
        }));
        let app = &pod.spec.as_ref().unwrap().containers[0];
        let env = with_facts(&[], |facts| container_env(&pod, app, facts, &source)).unwrap();
        let expected = pairs(&[
            ("CFG_LOG_LEVEL", "debug"),
            ("CFG_PORT", "9090"),
            ("DB_password", "hunter2"),
            ("URL", "http://localhost:8080/hunter2"),
            ("LATE", "9090 $(EARLY)"),
            ("EARLY", "defined after its use"),
            ("EMPTY", ""),
            ("FROM_KEY", "8080"),
            ("NOT_EXPANDED", "$(CFG_PORT)"),
        ]);
        assert_eq!(env.variables, expected);
        assert!(env.skipped.is_empty());
    }

    #[test]
    fn env_from_skips_invalid_names_and_reports_them() {
        // Keys that are not variable names once prefixed are left out and reported per source,
        // sorted, with kubelet's Event message; a prefix can make a key valid.
        let source = Objects::default()
            .with_config_map("mixed", &[("1st", "a"), ("ok.name", "b"), ("has space", "c"), ("-dash", "d")])
            .with_secret("numbers", &[("2fa", b"e")]);
        let pod = pod_with(json!({
            "envFrom": [
                {"configMapRef": {"name": "mixed"}},
                {"secretRef": {"name": "numbers"}},
                {"secretRef": {"name": "numbers"}, "prefix": "S_"},
            ],
        }));
        let app = &pod.spec.as_ref().unwrap().containers[0];
        let env = with_facts(&[], |facts| container_env(&pod, app, facts, &source)).unwrap();
        assert_eq!(env.variables, pairs(&[("-dash", "d"), ("ok.name", "b"), ("S_2fa", "e")]));
        let messages: Vec<String> = env.skipped.iter().map(SkippedKeys::event_message).collect();
        assert_eq!(
            messages,
            [
                "Keys [1st, has space] from the EnvFrom configMap default/mixed were skipped since they are considered invalid environment variable names.",
                "Keys [2fa] from the EnvFrom secret default/numbers were skipped since they are considered invalid environment variable names.",
            ]
        );
    }

    #[test]
    fn env_from_missing_objects() {
        // A missing ConfigMap or Secret in envFrom fails the container unless it is optional.
        let cases = [
            (json!({"configMapRef": {"name": "gone"}}), Err("configmap \"gone\" not found")),
            (json!({"configMapRef": {"name": "gone", "optional": true}}), Ok(0)),
            (json!({"secretRef": {"name": "gone"}}), Err("secret \"gone\" not found")),
            (json!({"secretRef": {"name": "gone", "optional": true}}), Ok(0)),
            (json!({"configMapRef": {"name": "app-config", "optional": true}}), Ok(2)),
            (json!({"secretRef": {"name": "db"}}), Err("key raw in Secret default/db is not valid UTF-8")),
        ];
        for (env_from, expected) in cases {
            let result = env_of(json!({"envFrom": [env_from]})).map(|variables| variables.len());
            assert_eq!(result, expected.map_err(str::to_owned), "{env_from}");
        }
    }

    #[test]
    fn value_from_config_maps_and_secrets() {
        // Each key reference resolves, is left out when optional and missing, or fails with
        // kubelet's message.
        let cases = [
            (json!({"configMapKeyRef": {"name": "app-config", "key": "LOG_LEVEL"}}), Ok(Some("debug"))),
            (json!({"configMapKeyRef": {"name": "app-config", "key": "NOPE", "optional": true}}), Ok(None)),
            (json!({"configMapKeyRef": {"name": "gone", "key": "LOG_LEVEL", "optional": true}}), Ok(None)),
            (
                json!({"configMapKeyRef": {"name": "app-config", "key": "NOPE"}}),
                Err("couldn't find key NOPE in ConfigMap default/app-config"),
            ),
            (
                json!({"configMapKeyRef": {"name": "gone", "key": "LOG_LEVEL"}}),
                Err("configmap \"gone\" not found"),
            ),
            (json!({"secretKeyRef": {"name": "db", "key": "password"}}), Ok(Some("hunter2"))),
            (json!({"secretKeyRef": {"name": "db", "key": "NOPE", "optional": true}}), Ok(None)),
            (json!({"secretKeyRef": {"name": "gone", "key": "password", "optional": true}}), Ok(None)),
            (
                json!({"secretKeyRef": {"name": "db", "key": "NOPE"}}),
                Err("couldn't find key NOPE in Secret default/db"),
            ),
            (json!({"secretKeyRef": {"name": "gone", "key": "password"}}), Err("secret \"gone\" not found")),
            (
                json!({"secretKeyRef": {"name": "db", "key": "raw"}}),
                Err("key raw in Secret default/db is not valid UTF-8"),
            ),
        ];
        for (source, expected) in cases {
            let expected = expected.map(|value| value.map(str::to_owned)).map_err(str::to_owned);
            assert_eq!(value_from(source.clone()), expected, "{source}");
        }
    }

    #[test]
    fn value_from_field_ref() {
        // Each supported field path reads the pod or the node's facts; others fail as upstream.
        let cases = [
            ("metadata.name", Ok("web")),
            ("metadata.namespace", Ok("default")),
            ("metadata.uid", Ok("uid-web")),
            ("metadata.labels['tier']", Ok("front")),
            ("metadata.labels['missing']", Ok("")),
            ("metadata.annotations['note']", Ok("say \"hi\"\n")),
            ("metadata.labels", Ok("app=\"web\"\ntier=\"front\"")),
            ("metadata.annotations", Ok("literal=\"$(CFG_PORT)\"\nnote=\"say \\\"hi\\\"\\n\"")),
            ("spec.nodeName", Ok("node-a")),
            ("spec.host", Ok("node-a")),
            ("spec.serviceAccountName", Ok("builder")),
            ("status.podIP", Ok("10.1.0.7")),
            ("status.podIPs", Ok("10.1.0.7")),
            ("status.hostIP", Ok("192.168.0.3")),
            ("status.hostIPs", Ok("192.168.0.3")),
            ("spec.restartPolicy", Err("field label not supported: spec.restartPolicy")),
            ("metadata.name['x']", Err("field label not supported: metadata.name['x']")),
        ];
        for (path, expected) in cases {
            let expected = expected.map(|value| Some(value.to_owned())).map_err(str::to_owned);
            assert_eq!(value_from(json!({"fieldRef": {"fieldPath": path}})), expected, "{path}");
        }
        let versioned = json!({"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}});
        assert_eq!(value_from(versioned), Err("unsupported pod version: v2".to_owned()));
    }

    #[test]
    fn field_ref_dual_stack() {
        // With several IPs, the singular fields are the first and the plural ones all of them.
        let pod = pod_with(json!({}));
        let pod_ips = ["10.1.0.7".to_owned(), "fd00::7".to_owned()];
        let host_ips = ["192.168.0.3".to_owned(), "fd00::3".to_owned()];
        with_facts(&[], |facts| {
            let facts = PodFacts { pod_ip: "", pod_ips: &pod_ips, host_ips: &host_ips, ..*facts };
            let field = |path: &str| {
                let selector = ObjectFieldSelector { field_path: path.to_owned(), api_version: None };
                field_value(&pod, &facts, &selector).unwrap()
            };
            assert_eq!(field("status.podIP"), "10.1.0.7");
            assert_eq!(field("status.podIPs"), "10.1.0.7,fd00::7");
            assert_eq!(field("status.hostIP"), "192.168.0.3");
            assert_eq!(field("status.hostIPs"), "192.168.0.3,fd00::3");
        });
    }

    #[test]
    fn value_from_resource_field_ref() {
        // Each resource divided by its divisor and rounded up; unset cpu, memory and
        // ephemeral-storage limits are the node's allocatable (4 cpus, 8Gi, 100Gi).
        let resources = json!({
            "requests": {"cpu": "250m", "memory": "100M", "ephemeral-storage": "500M"},
            "limits": {"cpu": "1500m", "memory": "128Mi", "hugepages-2Mi": "4Mi"},
        });
        // (resource, divisor, containerName, value or error)
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Result<&'a str, &'a str>);
        let cases: &[Case] = &[
            ("requests.cpu", None, None, Ok("1")),
            ("requests.cpu", Some("1m"), None, Ok("250")),
            ("requests.cpu", Some("0"), None, Ok("1")),
            ("requests.cpu", Some("100m"), None, Ok("3")),
            ("limits.cpu", None, None, Ok("2")),
            ("limits.cpu", Some("1m"), None, Ok("1500")),
            ("limits.memory", Some("1Mi"), None, Ok("128")),
            ("limits.memory", Some("1M"), None, Ok("135")),
            ("limits.memory", None, None, Ok("134217728")),
            ("requests.memory", Some("1Mi"), None, Ok("96")),
            ("requests.ephemeral-storage", Some("1G"), None, Ok("1")),
            ("limits.ephemeral-storage", Some("1Gi"), None, Ok("100")),
            ("limits.hugepages-2Mi", Some("2Mi"), None, Ok("2")),
            ("requests.hugepages-2Mi", None, None, Ok("0")),
            ("limits.cpu", Some("1m"), Some("sidecar"), Ok("2000")),
            ("limits.memory", Some("1Gi"), Some("sidecar"), Ok("8")),
            ("requests.cpu", None, Some("sidecar"), Ok("0")),
            ("limits.cpu", None, Some("nope"), Err("container nope not found")),
            ("limits.gpu", None, None, Err("unsupported container resource : limits.gpu")),
            ("cpu", None, None, Err("unsupported container resource : cpu")),
        ];
        for &(resource, divisor, container, expected) in cases {
            let selector = json!({"resource": resource, "divisor": divisor, "containerName": container});
            let result = env_of(json!({
                "resources": resources,
                "env": [{"name": "V", "valueFrom": {"resourceFieldRef": selector}}],
            }))
            .map(|variables| variables[0].1.clone());
            assert_eq!(
                result,
                expected.map(str::to_owned).map_err(str::to_owned),
                "{resource} / {divisor:?}"
            );
        }
    }

    #[test]
    fn quantities() {
        // Quantities in nano-units: suffixes, fractions, exponents, rounding up past the nano.
        let cases = [
            ("1", Some(1_000_000_000)),
            ("250m", Some(250_000_000)),
            ("1.5", Some(1_500_000_000)),
            (".5", Some(500_000_000)),
            ("2k", Some(2_000_000_000_000)),
            ("1Ki", Some(1_024_000_000_000)),
            ("1.5Gi", Some(1_610_612_736_000_000_000)),
            ("1e3", Some(1_000_000_000_000)),
            ("1E-3", Some(1_000_000)),
            ("5n", Some(5)),
            ("0.1n", Some(1)),
            ("1e-40", Some(1)),
            ("-2", Some(-2_000_000_000)),
            ("+2", Some(2_000_000_000)),
            ("0", Some(0)),
            ("", None),
            (".", None),
            ("1.2.3", None),
            ("1K", None),
            ("1e", None),
            ("cpu", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_quantity(text), expected, "{text:?}");
        }
    }

    fn service(namespace: &str, name: &str, cluster_ip: &str, ports: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": cluster_ip, "ports": ports},
        }))
        .unwrap()
    }

    #[test]
    fn service_variables() {
        // Docker-links variables per Service with a ClusterIP: names upper-cased with '-' as
        // '_' and a '_' before a leading digit; the first port unnamed-compatible.
        let services = [
            service(
                "default",
                "web-front",
                "10.0.0.5",
                json!([
                    {"name": "http", "port": 80},
                    {"name": "metrics-udp", "port": 9090, "protocol": "UDP"},
                ]),
            ),
            service("default", "headless", "None", json!([{"port": 80}])),
            service("default", "3rd", "10.0.0.6", json!([{"port": 53, "protocol": "SCTP"}])),
        ];
        let expected = pairs(&[
            ("WEB_FRONT_SERVICE_HOST", "10.0.0.5"),
            ("WEB_FRONT_SERVICE_PORT", "80"),
            ("WEB_FRONT_SERVICE_PORT_HTTP", "80"),
            ("WEB_FRONT_SERVICE_PORT_METRICS_UDP", "9090"),
            ("WEB_FRONT_PORT", "tcp://10.0.0.5:80"),
            ("WEB_FRONT_PORT_80_TCP_PROTO", "tcp"),
            ("WEB_FRONT_PORT_80_TCP_PORT", "80"),
            ("WEB_FRONT_PORT_80_TCP_ADDR", "10.0.0.5"),
            ("WEB_FRONT_PORT_80_TCP", "tcp://10.0.0.5:80"),
            ("WEB_FRONT_PORT_9090_UDP_PROTO", "udp"),
            ("WEB_FRONT_PORT_9090_UDP_PORT", "9090"),
            ("WEB_FRONT_PORT_9090_UDP_ADDR", "10.0.0.5"),
            ("WEB_FRONT_PORT_9090_UDP", "udp://10.0.0.5:9090"),
            ("_3RD_SERVICE_HOST", "10.0.0.6"),
            ("_3RD_SERVICE_PORT", "53"),
            ("_3RD_PORT", "sctp://10.0.0.6:53"),
            ("_3RD_PORT_53_SCTP_PROTO", "sctp"),
            ("_3RD_PORT_53_SCTP_PORT", "53"),
            ("_3RD_PORT_53_SCTP_ADDR", "10.0.0.6"),
            ("_3RD_PORT_53_SCTP", "sctp://10.0.0.6:53"),
        ]);
        assert_eq!(service_env(&services), expected);
    }

    #[test]
    fn service_links() {
        // A pod gets default/kubernetes always, its namespace's Services unless
        // enableServiceLinks is false, never another namespace's; its own variables win over
        // service variables, which its values can reference.
        let services = [
            service("default", "kubernetes", "10.0.0.1", json!([{"name": "https", "port": 443}])),
            service("default", "cache", "10.0.0.9", json!([{"port": 6379}])),
            service("other", "db", "10.0.0.10", json!([{"port": 5432}])),
        ];
        let names = |enable_service_links: bool| {
            let mut pod = pod_with(json!({"env": [
                {"name": "CACHE_SERVICE_PORT", "value": "mine"},
                {"name": "API", "value": "$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
            ]}));
            pod.spec.as_mut().unwrap().enable_service_links = Some(enable_service_links);
            let app = &pod.spec.as_ref().unwrap().containers[0];
            let env = with_facts(&services, |facts| container_env(&pod, app, facts, &objects())).unwrap();
            env.variables
        };
        let linked = names(true);
        assert_eq!(&linked[..2], &pairs(&[("CACHE_SERVICE_PORT", "mine"), ("API", "10.0.0.1:443")])[..]);
        let linked_names: Vec<&str> = linked[2..].iter().map(|(name, _)| name.as_str()).collect();
        assert!(linked_names.contains(&"CACHE_SERVICE_HOST"));
        assert!(linked_names.contains(&"KUBERNETES_SERVICE_PORT_HTTPS"));
        assert!(!linked_names.contains(&"CACHE_SERVICE_PORT"));
        assert!(!linked_names.iter().any(|name| name.starts_with("DB_")));
        let unlinked = names(false);
        assert!(unlinked[2..].iter().all(|(name, _)| name.starts_with("KUBERNETES_")));
        assert_eq!(unlinked[1], ("API".to_owned(), "10.0.0.1:443".to_owned()));
    }
}
