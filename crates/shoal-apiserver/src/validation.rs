//! Validation: every problem kube-apiserver would report for an object, as `StatusCause`s.
//!
//! Follows upstream 1.33 (pkg/apis/core/validation, apps, autoscaling, coordination and discovery
//! validation, k8s.io/apimachinery's ObjectMeta and format checks) so that field paths and
//! messages read as `kubectl` users know them — including upstream's quirks (a Node's taints
//! reported under `metadata.taints`, `downwarAPI`, a ConfigMap's size under `[]`), since clients
//! and people match on these strings. Where upstream prints a Go value with `%#v`, this prints
//! the same shape for the common cases (maps, label selectors) and JSON otherwise.
//!
//! The object is first decoded into its k8s-openapi type, as kube-apiserver decodes a request
//! before it validates: a value of the wrong JSON type ends validation with one
//! `FieldValueTypeInvalid` cause. (A missing required field is not a decoding problem upstream,
//! so it is reported by the checks instead, as "Required value".) Everything after reads the
//! JSON leniently: a value of the wrong type reads as absent, and nothing panics.
//!
//! The caller runs [`crate::defaults::apply`] first, fills generated names, and on create runs
//! its allocators (cluster IPs, node ports) first, as kube-apiserver does before it validates.
//!
//! This file is longer than STYLE.md's ~600 lines: it is owned as one unit while others edit
//! the crate. Its sections (field errors, formats, ObjectMeta, then one per kind) are the seams
//! along which it splits into validation/*.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use shoal_quantity::Quantity;

/// Every problem with `object` (already defaulted), as kube-apiserver reports them in a 422.
///
/// `old` is the stored object on update (`None` on create); then immutable fields are checked
/// too. kube-apiserver copies a few fields from the stored object before it validates an update,
/// so a client may leave them out: `uid`, `deletionTimestamp` and `deletionGracePeriodSeconds`
/// are compared only when the update sets them, and `resourceVersion` and `generation` (which
/// the registry sets) are not checked here. `creationTimestamp`, which upstream silently resets,
/// is reported as immutable when an update changes it. `namespaced` says whether
/// `metadata.namespace` is required or forbidden.
pub fn validate(kind: &str, object: &Value, old: Option<&Value>, namespaced: bool) -> Vec<StatusCause> {
    let decode_failure = decode_failure(kind, object);
    if let Some(message) = &decode_failure
        && !message.starts_with("missing field")
    {
        return vec![type_cause(kind, message)];
    }
    let mut errs = Errors::default();
    let scope = Scope { namespaced, old };
    if let Some(old) = old {
        object_meta_update(&mut errs, object, old);
    }
    match kind {
        "Namespace" => namespace(&mut errs, object, scope),
        "Node" => node(&mut errs, object, scope),
        "Pod" => pod(&mut errs, object, scope),
        "Service" => service(&mut errs, object, scope),
        "Endpoints" => endpoints(&mut errs, object, scope),
        "ConfigMap" => config_map(&mut errs, object, scope),
        "Secret" => secret(&mut errs, object, scope),
        "ServiceAccount" => object_meta(&mut errs, object, scope.namespaced, NameRule::Subdomain, true),
        "Event" => event(&mut errs, object, scope),
        "Deployment" => deployment(&mut errs, object, scope),
        "ReplicaSet" => replica_set(&mut errs, object, scope),
        "Lease" => lease(&mut errs, object, scope),
        "EndpointSlice" => endpoint_slice(&mut errs, object, scope),
        "HorizontalPodAutoscaler" => horizontal_pod_autoscaler(&mut errs, object, scope),
        _ => object_meta(&mut errs, object, scope.namespaced, NameRule::Subdomain, false),
    }
    let causes = errs.into_causes();
    match decode_failure {
        Some(message) if causes.is_empty() => vec![type_cause(kind, &message)],
        _ => causes,
    }
}

/// The message kube-apiserver puts in a 422 Status: `Deployment.apps "web" is invalid: ...`.
///
/// Upstream's `ToAggregate` format: the causes as `field: message`, duplicates dropped, one
/// without brackets and several inside `[...]` joined by ", ".
pub fn invalid_message(kind: &str, group: &str, name: &str, causes: &[StatusCause]) -> String {
    let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    let mut messages: Vec<String> = Vec::new();
    for cause in causes {
        let body = cause.message.as_deref().unwrap_or("");
        let message = match cause.field.as_deref() {
            Some(field) if !field.is_empty() => format!("{field}: {body}"),
            _ => body.to_string(),
        };
        if !messages.contains(&message) {
            messages.push(message);
        }
    }
    let aggregate = match messages.as_slice() {
        [] => return format!("{qualified_kind} {} is invalid", go_quote(name)),
        [message] => message.clone(),
        _ => format!("[{}]", messages.join(", ")),
    };
    format!("{qualified_kind} {} is invalid: {aggregate}", go_quote(name))
}

/// What a kind's validation needs besides the object.
#[derive(Clone, Copy)]
struct Scope<'a> {
    namespaced: bool,
    old: Option<&'a Value>,
}

/// Decodes `object` into its k8s-openapi type; the decoder's message if that fails.
fn decode_failure(kind: &str, object: &Value) -> Option<String> {
    use k8s_openapi::api::{apps, autoscaling, coordination, core, discovery};
    fn check<T: DeserializeOwned>(object: &Value) -> Option<String> {
        T::deserialize(object).err().map(|error| error.to_string())
    }
    match kind {
        "Namespace" => check::<core::v1::Namespace>(object),
        "Node" => check::<core::v1::Node>(object),
        "Pod" => check::<core::v1::Pod>(object),
        "Service" => check::<core::v1::Service>(object),
        "Endpoints" => check::<core::v1::Endpoints>(object),
        "ConfigMap" => check::<core::v1::ConfigMap>(object),
        "Secret" => check::<core::v1::Secret>(object),
        "ServiceAccount" => check::<core::v1::ServiceAccount>(object),
        "Event" => check::<core::v1::Event>(object),
        "Deployment" => check::<apps::v1::Deployment>(object),
        "ReplicaSet" => check::<apps::v1::ReplicaSet>(object),
        "Lease" => check::<coordination::v1::Lease>(object),
        "EndpointSlice" => check::<discovery::v1::EndpointSlice>(object),
        "HorizontalPodAutoscaler" => check::<autoscaling::v2::HorizontalPodAutoscaler>(object),
        _ => (!object.is_object()).then(|| "expected an object".to_string()),
    }
}

fn type_cause(kind: &str, message: &str) -> StatusCause {
    StatusCause {
        reason: Some(ErrorType::TypeInvalid.reason().to_string()),
        field: None,
        message: Some(format!("Invalid value: {kind} cannot be handled as a {kind}: {message}")),
    }
}

// ---- Field errors: upstream's field.Error, its types and its message format ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    TypeInvalid,
}

impl ErrorType {
    fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    fn text(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
        }
    }
}

/// A bad value as upstream prints it: strings quoted, numbers bare, Go values pre-rendered.
enum Bad {
    Str(String),
    Num(i64),
    Go(String),
}

impl From<&str> for Bad {
    fn from(text: &str) -> Bad {
        Bad::Str(text.to_string())
    }
}

impl From<String> for Bad {
    fn from(text: String) -> Bad {
        Bad::Str(text)
    }
}

impl From<i64> for Bad {
    fn from(number: i64) -> Bad {
        Bad::Num(number)
    }
}

struct FieldError {
    kind: ErrorType,
    field: String,
    bad: Bad,
    detail: String,
}

impl FieldError {
    /// Upstream's `ErrorBody`: the type, then the bad value unless the type omits it, then the
    /// detail.
    fn body(&self) -> String {
        let mut body = self.kind.text().to_string();
        if !matches!(self.kind, ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong) {
            match &self.bad {
                Bad::Str(text) => {
                    body.push_str(": ");
                    body.push_str(&go_quote(text));
                }
                Bad::Num(number) => {
                    let _ = write!(body, ": {number}");
                }
                Bad::Go(rendered) => {
                    let _ = write!(body, ": {rendered}");
                }
            }
        }
        if !self.detail.is_empty() {
            body.push_str(": ");
            body.push_str(&self.detail);
        }
        body
    }
}

/// A field path as upstream prints it: `spec.containers[0].env[1].name`, `metadata.labels[k]`.
#[derive(Clone)]
struct Path(String);

impl Path {
    fn root(name: &str) -> Path {
        Path(name.to_string())
    }

    fn child(&self, name: &str) -> Path {
        if self.0.is_empty() { Path(name.to_string()) } else { Path(format!("{}.{name}", self.0)) }
    }

    fn index(&self, index: usize) -> Path {
        Path(format!("{}[{index}]", self.0))
    }

    fn key(&self, key: &str) -> Path {
        Path(format!("{}[{key}]", self.0))
    }
}

/// The errors found so far, in upstream's order.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, kind: ErrorType, path: &Path, bad: Bad, detail: impl Into<String>) {
        self.0.push(FieldError { kind, field: path.0.clone(), bad, detail: detail.into() });
    }

    fn required(&mut self, path: &Path, detail: &str) {
        self.push(ErrorType::Required, path, Bad::Str(String::new()), detail);
    }

    fn invalid(&mut self, path: &Path, bad: impl Into<Bad>, detail: impl Into<String>) {
        self.push(ErrorType::Invalid, path, bad.into(), detail);
    }

    fn invalid_go(&mut self, path: &Path, rendered: String, detail: impl Into<String>) {
        self.push(ErrorType::Invalid, path, Bad::Go(rendered), detail);
    }

    fn not_supported(&mut self, path: &Path, bad: impl Into<Bad>, valid: &[&str]) {
        let quoted: Vec<String> = valid.iter().map(|value| go_quote(value)).collect();
        let detail = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        self.push(ErrorType::NotSupported, path, bad.into(), detail);
    }

    fn duplicate(&mut self, path: &Path, bad: impl Into<Bad>) {
        self.push(ErrorType::Duplicate, path, bad.into(), "");
    }

    fn forbidden(&mut self, path: &Path, detail: impl Into<String>) {
        self.push(ErrorType::Forbidden, path, Bad::Str(String::new()), detail);
    }

    fn too_long(&mut self, path: &Path, max_bytes: usize) {
        self.push(
            ErrorType::TooLong,
            path,
            Bad::Str(String::new()),
            format!("must have at most {max_bytes} bytes"),
        );
    }

    fn too_many(&mut self, path: &Path, actual: usize, max: usize) {
        let actual = i64::try_from(actual).unwrap_or(i64::MAX);
        self.push(ErrorType::TooMany, path, Bad::Num(actual), format!("must have at most {max} items"));
    }

    fn not_found(&mut self, path: &Path, bad: impl Into<Bad>) {
        self.push(ErrorType::NotFound, path, bad.into(), "");
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// The causes, each once: update validation re-runs some checks, as upstream's does.
    fn into_causes(self) -> Vec<StatusCause> {
        let mut seen = BTreeSet::new();
        let mut causes = Vec::new();
        for error in self.0 {
            let body = error.body();
            if !seen.insert((error.kind.reason(), error.field.clone(), body.clone())) {
                continue;
            }
            causes.push(StatusCause {
                reason: Some(error.kind.reason().to_string()),
                field: (!error.field.is_empty()).then_some(error.field),
                message: Some(body),
            });
        }
        causes
    }
}

/// A string as Go's `%q` prints it. Non-ASCII characters count as printable unless they are
/// control or whitespace characters, a close approximation of Go's `unicode.IsPrint`.
pub(crate) fn go_quote(text: &str) -> String {
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
                quoted.push_str(&format!("\\u{:04x}", u32::from(character)))
            }
            _ => quoted.push_str(&format!("\\U{:08x}", u32::from(character))),
        }
    }
    quoted.push('"');
    quoted
}

/// Go's `%#v` of a `map[string]string`; an absent map is a nil one.
fn go_string_map(map: Option<&BTreeMap<&str, &str>>) -> String {
    let Some(map) = map else { return "map[string]string(nil)".to_string() };
    let entries: Vec<String> =
        map.iter().map(|(key, value)| format!("{}:{}", go_quote(key), go_quote(value))).collect();
    format!("map[string]string{{{}}}", entries.join(", "))
}

/// Go's `%#v` of a `[]string`; an absent list is a nil one.
fn go_strings(list: Option<&[&str]>) -> String {
    let Some(list) = list else { return "[]string(nil)".to_string() };
    let quoted: Vec<String> = list.iter().map(|item| go_quote(item)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Go's `%#v` of a `metav1.LabelSelector`, as upstream prints a selector it rejects.
fn go_label_selector(selector: &Value) -> String {
    let match_labels = get(selector, "matchLabels").map(|_| string_map(selector, "matchLabels"));
    let expressions = match get(selector, "matchExpressions") {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(_) => {
            let rendered: Vec<String> = list(selector, "matchExpressions")
                .iter()
                .map(|expression| {
                    let values = get(expression, "values").map(|_| strings(expression, "values"));
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(text(expression, "key")),
                        go_quote(text(expression, "operator")),
                        go_strings(values.as_deref())
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", rendered.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{expressions}}}",
        go_string_map(match_labels.as_ref())
    )
}

// ---- Lenient JSON access: a value of the wrong type reads as absent ----

fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.get(key).filter(|field| !field.is_null())
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn opt_text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn int(value: &Value, key: &str) -> Option<i64> {
    value.get(key).and_then(Value::as_i64)
}

fn flag(value: &Value, key: &str) -> bool {
    value.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn strings<'a>(value: &'a Value, key: &str) -> Vec<&'a str> {
    list(value, key).iter().filter_map(Value::as_str).collect()
}

/// A `map[string]string` field, sorted (Go iterates maps in no order; sorted is one of them).
fn string_map<'a>(value: &'a Value, key: &str) -> BTreeMap<&'a str, &'a str> {
    value
        .get(key)
        .and_then(Value::as_object)
        .map(|map| map.iter().filter_map(|(key, value)| Some((key.as_str(), value.as_str()?))).collect())
        .unwrap_or_default()
}

/// An int-or-string field (ports, maxSurge): `None` when absent.
enum IntOrString<'a> {
    Int(i64),
    Str(&'a str),
}

fn int_or_string<'a>(value: &'a Value, key: &str) -> Option<IntOrString<'a>> {
    match value.get(key)? {
        Value::Number(number) => number.as_i64().map(IntOrString::Int),
        Value::String(text) => Some(IntOrString::Str(text)),
        _ => None,
    }
}

/// Upstream's semantic equality on JSON: absent, null, empty lists and empty maps are alike.
fn normalized(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => {
            Some(Value::Array(items.iter().map(|item| normalized(item).unwrap_or(Value::Null)).collect()))
        }
        Value::Object(map) => {
            let kept: Map<String, Value> =
                map.iter().filter_map(|(key, value)| Some((key.clone(), normalized(value)?))).collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        other => Some(other.clone()),
    }
}

fn same(left: Option<&Value>, right: Option<&Value>) -> bool {
    left.and_then(normalized) == right.and_then(normalized)
}

// ---- Formats: apimachinery's util/validation, message for message ----

const DNS1123_LABEL_MAX_LENGTH: usize = 63;
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
const DNS1035_LABEL_MAX_LENGTH: usize = 63;
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
const LABEL_VALUE_MAX_LENGTH: usize = 63;
const DNS1123_LABEL_FORMAT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FORMAT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_UNDERSCORE_SUBDOMAIN_FORMAT: &str =
    "_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*";
const DNS1123_UNDERSCORE_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FORMAT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FORMAT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FORMAT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const CONFIG_MAP_KEY_FORMAT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_MAP_KEY_MESSAGE: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const RELAXED_ENV_VAR_NAME_MESSAGE: &str =
    "a valid environment variable name must consist only of printable ASCII characters other than '='";
const PERCENT_FORMAT: &str = "[0-9]+%";
const PERCENT_MESSAGE: &str = "a valid percent string must be a numeric string followed by an ending '%'";
const HTTP_HEADER_NAME_FORMAT: &str = "[-A-Za-z0-9]+";
const HTTP_HEADER_NAME_MESSAGE: &str = "a valid HTTP header must consist of alphanumeric characters or '-'";
const IP_MESSAGE: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const CIDR_MESSAGE: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";
const NEGATIVE_MESSAGE: &str = "must be greater than or equal to 0";
const IMMUTABLE_MESSAGE: &str = "field is immutable";

/// Upstream's `RegexError`, with its doubled space between examples.
fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{message} (regex used for validation is '{format}')");
    }
    let mut out = format!("{message} (e.g. ");
    for (index, example) in examples.iter().enumerate() {
        if index > 0 {
            out.push_str(" or ");
        }
        let _ = write!(out, "'{example}', ");
    }
    let _ = write!(out, "regex used for validation is '{format}')");
    out
}

fn max_length_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

fn inclusive_range_error(low: i64, high: i64) -> String {
    format!("must be between {low} and {high}, inclusive")
}

fn is_lower_alphanumeric(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit()
}

fn matches_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alphanumeric(first)
                && is_lower_alphanumeric(last)
                && bytes.iter().all(|&byte| is_lower_alphanumeric(byte) || byte == b'-')
        }
        _ => false,
    }
}

fn matches_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(matches_dns1123_label)
}

fn matches_underscore_label(label: &str) -> bool {
    let label = label.strip_prefix('_').unwrap_or(label);
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alphanumeric(first)
                && is_lower_alphanumeric(last)
                && bytes.iter().all(|&byte| is_lower_alphanumeric(byte) || byte == b'-' || byte == b'_')
        }
        _ => false,
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`: a qualified name's name part, a label value.
fn matches_qualified_part(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        messages.push(max_length_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            messages.push("must not contain dots".to_string());
        } else {
            messages.push(regex_error(DNS1123_LABEL_MESSAGE, DNS1123_LABEL_FORMAT, &["my-name", "123-abc"]));
        }
    }
    messages
}

pub(crate) fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        messages.push(max_length_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        messages.push(regex_error(DNS1123_SUBDOMAIN_MESSAGE, DNS1123_SUBDOMAIN_FORMAT, &["example.com"]));
    }
    messages
}

fn is_dns1123_subdomain_with_underscore(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        messages.push(max_length_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !value.split('.').all(matches_underscore_label) {
        let format = DNS1123_UNDERSCORE_SUBDOMAIN_FORMAT;
        messages.push(regex_error(DNS1123_UNDERSCORE_SUBDOMAIN_MESSAGE, format, &["example.com"]));
    }
    messages
}

fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        messages.push(max_length_error(DNS1035_LABEL_MAX_LENGTH));
    }
    let starts_with_letter = value.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
    if !(starts_with_letter && matches_dns1123_label(value)) {
        messages.push(regex_error(DNS1035_LABEL_MESSAGE, DNS1035_LABEL_FORMAT, &["my-name", "abc-123"]));
    }
    messages
}

/// Upstream's `IsQualifiedName`: label keys, annotation keys, finalizers and more.
pub(crate) fn is_qualified_name(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                messages.push("prefix part must be non-empty".to_string());
            } else {
                messages.extend(
                    is_dns1123_subdomain(prefix).into_iter().map(|message| format!("prefix part {message}")),
                );
            }
            *name
        }
        _ => {
            let examples =
                regex_error(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_FORMAT, &["MyName", "my.name", "123-abc"]);
            return vec![format!(
                "a qualified name {examples} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        messages.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        messages.push(format!("name part {}", max_length_error(QUALIFIED_NAME_MAX_LENGTH)));
    }
    if !matches_qualified_part(name) {
        let examples =
            regex_error(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_FORMAT, &["MyName", "my.name", "123-abc"]);
        messages.push(format!("name part {examples}"));
    }
    messages
}

pub(crate) fn is_label_value(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        messages.push(max_length_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_part(value) {
        messages.push(regex_error(
            LABEL_VALUE_MESSAGE,
            LABEL_VALUE_FORMAT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    messages
}

fn has_chdir_prefix(value: &str) -> Option<&'static str> {
    match value {
        "." => Some("must not be '.'"),
        ".." => Some("must not be '..'"),
        _ if value.starts_with("..") => Some("must not start with '..'"),
        _ => None,
    }
}

fn is_config_map_key(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        messages.push(max_length_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    let valid = !value.is_empty()
        && value.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_'));
    if !valid {
        messages.push(regex_error(
            CONFIG_MAP_KEY_MESSAGE,
            CONFIG_MAP_KEY_FORMAT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    messages.extend(has_chdir_prefix(value).map(str::to_string));
    messages
}

/// 1.33 validates environment variable names leniently (RelaxedEnvironmentVariableValidation).
fn is_relaxed_env_var_name(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.is_empty() {
        messages.push("environment variable name must be non-empty".to_string());
    }
    if value.chars().any(|character| !(' '..='~').contains(&character) || character == '=') {
        messages.push(RELAXED_ENV_VAR_NAME_MESSAGE.to_string());
    }
    messages
}

fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if port.len() > 15 {
        messages.push(max_length_error(15));
    }
    if port.is_empty() || !port.bytes().all(|byte| is_lower_alphanumeric(byte) || byte == b'-') {
        messages.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if !port.bytes().any(|byte| byte.is_ascii_lowercase()) {
        messages.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        messages.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        messages.push("must not begin or end with a hyphen".to_string());
    }
    messages
}

fn is_valid_port_number(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) { Vec::new() } else { vec![inclusive_range_error(1, 65535)] }
}

/// The digits of a percent string ("25%" gives 25), if it is one.
fn percent_value(value: &str) -> Option<i64> {
    let digits = value.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<i64>().unwrap_or(i64::MAX))
}

/// Go's forked `net.ParseIP`: IPv4 parts may have leading zeros.
fn parse_ip_sloppy(value: &str) -> Option<IpAddr> {
    if value.contains(':') {
        return value.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let mut octets = [0u8; 4];
    let mut parts = value.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || !part.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let number = part.bytes().try_fold(0u32, |number, digit| {
            let number = number * 10 + u32::from(digit - b'0');
            (number <= 255).then_some(number)
        })?;
        *octet = u8::try_from(number).ok()?;
    }
    parts.next().is_none().then(|| IpAddr::V4(Ipv4Addr::from(octets)))
}

/// An IPv4-mapped IPv6 address counts as IPv4, as in Go.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_ipv6(value: &str) -> bool {
    parse_ip_sloppy(value).map(canonical_ip).is_some_and(|ip| ip.is_ipv6())
}

fn valid_ip(errs: &mut Errors, path: &Path, value: &str) {
    if parse_ip_sloppy(value).is_none() {
        errs.invalid(path, value, IP_MESSAGE);
    }
}

fn valid_cidr(errs: &mut Errors, path: &Path, value: &str) {
    let valid = value.split_once('/').is_some_and(|(ip, bits)| {
        let Some(ip) = parse_ip_sloppy(ip) else { return false };
        let max_bits = if ip.is_ipv4() { 32 } else { 128 };
        !bits.is_empty()
            && bits.bytes().all(|byte| byte.is_ascii_digit())
            && bits.parse::<u32>().is_ok_and(|bits| bits <= max_bits)
    });
    if !valid {
        errs.invalid(path, value, CIDR_MESSAGE);
    }
}

/// Whether an address check lets loopback addresses through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Loopback {
    Refused,
    Allowed,
}

/// Upstream's `ValidateNonSpecialIP`, for external IPs.
fn non_special_ip(errs: &mut Errors, path: &Path, value: &str) {
    special_ip_checks(errs, path, value, Loopback::Refused);
}

/// Upstream's `ValidateNonSpecialIP` for the addresses of Endpoints and EndpointSlices, but
/// for loopback ones: shoal's process runtime gives pods loopback addresses (127.x.y.z), and
/// their endpoints must be able to say so.
fn endpoint_ip(errs: &mut Errors, path: &Path, value: &str) {
    special_ip_checks(errs, path, value, Loopback::Allowed);
}

fn special_ip_checks(errs: &mut Errors, path: &Path, value: &str, loopback: Loopback) {
    let Some(ip) = parse_ip_sloppy(value).map(canonical_ip) else {
        errs.invalid(path, value, "must be a valid IP address");
        return;
    };
    if ip.is_unspecified() {
        errs.invalid(path, value, format!("may not be unspecified ({value})"));
    }
    if ip.is_loopback() && loopback == Loopback::Refused {
        errs.invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)");
    }
    let (link_local_unicast, link_local_multicast) = match ip {
        IpAddr::V4(v4) => (v4.is_link_local(), v4.octets()[..3] == [224, 0, 0]),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            (segments[0] & 0xffc0 == 0xfe80, segments[0] & 0xff0f == 0xff02)
        }
    };
    if link_local_unicast {
        errs.invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)");
    }
    if link_local_multicast {
        errs.invalid(path, value, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)");
    }
}

fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|illegal| name.contains(**illegal))
        .map(|illegal| format!("may not contain '{illegal}'"))
        .collect()
}

fn dns1123_label(errs: &mut Errors, path: &Path, value: &str) {
    for message in is_dns1123_label(value) {
        errs.invalid(path, value, message);
    }
}

fn dns1123_subdomain(errs: &mut Errors, path: &Path, value: &str) {
    for message in is_dns1123_subdomain(value) {
        errs.invalid(path, value, message);
    }
}

fn qualified_name(errs: &mut Errors, path: &Path, value: &str) {
    for message in is_qualified_name(value) {
        errs.invalid(path, value, message);
    }
}

fn non_negative(errs: &mut Errors, path: &Path, value: Option<i64>) {
    if let Some(value) = value.filter(|value| *value < 0) {
        errs.invalid(path, value, NEGATIVE_MESSAGE);
    }
}

fn immutable_text(errs: &mut Errors, path: &Path, new: &str, old: &str) {
    if new != old {
        errs.invalid(path, new, IMMUTABLE_MESSAGE);
    }
}

// ---- Quantities (read by shoal-quantity) ----

const QUANTITY_FORMAT_MESSAGE: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// The quantity at `path`, or an error when it does not parse.
fn quantity(errs: &mut Errors, path: &Path, value: &Value) -> Option<Quantity> {
    let raw = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => return None,
    };
    let parsed = Quantity::parse(&raw);
    if parsed.is_none() {
        errs.invalid(path, raw, QUANTITY_FORMAT_MESSAGE);
    }
    parsed
}

fn quantity_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

// ---- ObjectMeta: apimachinery's ValidateObjectMeta and ValidateObjectMetaUpdate ----

/// Upstream's TotalAnnotationSizeLimitB: keys and values together.
const TOTAL_ANNOTATION_SIZE_LIMIT_BYTES: usize = 256 * 1024;
/// Finalizers that need no domain prefix.
const STANDARD_FINALIZERS: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];

/// How a kind's names are checked.
#[derive(Clone, Copy)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035Label,
    /// Only what a URL path segment forbids (kube-apiserver's generic check).
    PathSegment,
}

fn name_messages(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    if let NameRule::PathSegment = rule {
        let messages = is_valid_path_segment_name(name);
        return if prefix {
            messages.into_iter().filter(|message| message.starts_with("may not contain")).collect()
        } else {
            messages
        };
    }
    // Upstream's maskTrailingDash: a generateName may end in '-'; it drops the last two
    // characters and appends "a".
    let masked;
    let name = if prefix && name.len() > 1 && name.ends_with('-') {
        let mut characters = name.chars();
        characters.next_back();
        characters.next_back();
        masked = format!("{}a", characters.as_str());
        masked.as_str()
    } else {
        name
    };
    match rule {
        NameRule::Subdomain | NameRule::PathSegment => is_dns1123_subdomain(name),
        NameRule::Label => is_dns1123_label(name),
        NameRule::Dns1035Label => is_dns1035_label(name),
    }
}

fn metadata(object: &Value) -> &Value {
    get(object, "metadata").unwrap_or(&Value::Null)
}

/// ValidateObjectMeta, with core's check of unprefixed finalizer names when `kube_finalizers`.
fn object_meta(errs: &mut Errors, object: &Value, namespaced: bool, rule: NameRule, kube_finalizers: bool) {
    let meta = metadata(object);
    let path = Path::root("metadata");
    let generate_name = text(meta, "generateName");
    if !generate_name.is_empty() {
        for message in name_messages(rule, generate_name, true) {
            errs.invalid(&path.child("generateName"), generate_name, message);
        }
    }
    let name = text(meta, "name");
    if name.is_empty() {
        errs.required(&path.child("name"), "name or generateName is required");
    } else {
        for message in name_messages(rule, name, false) {
            errs.invalid(&path.child("name"), name, message);
        }
    }
    let namespace = text(meta, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.required(&path.child("namespace"), "");
        } else {
            for message in is_dns1123_label(namespace) {
                errs.invalid(&path.child("namespace"), namespace, message);
            }
        }
    } else if !namespace.is_empty() {
        errs.forbidden(&path.child("namespace"), "not allowed on this type");
    }
    non_negative(errs, &path.child("generation"), int(meta, "generation"));
    labels(errs, &path.child("labels"), &string_map(meta, "labels"));
    annotations(errs, &path.child("annotations"), &string_map(meta, "annotations"));
    owner_references(errs, &path.child("ownerReferences"), list(meta, "ownerReferences"));
    let finalizer_names = strings(meta, "finalizers");
    finalizers(errs, &path.child("finalizers"), &finalizer_names);
    if kube_finalizers {
        for (index, finalizer) in finalizer_names.iter().enumerate() {
            kube_finalizer_name(errs, &path.child("finalizers").index(index), finalizer);
        }
    }
}

/// ValidateObjectMetaAccessorUpdate, as kube-apiserver runs it on every update after copying
/// the fields a client may leave out (uid, creationTimestamp, deletion fields) from `old`.
fn object_meta_update(errs: &mut Errors, object: &Value, old: &Value) {
    let (meta, old_meta) = (metadata(object), metadata(old));
    let path = Path::root("metadata");
    if get(old_meta, "deletionTimestamp").is_some() {
        let old_finalizers: BTreeSet<&str> = strings(old_meta, "finalizers").into_iter().collect();
        let new_finalizers: BTreeSet<&str> = strings(meta, "finalizers").into_iter().collect();
        let added: Vec<&str> = new_finalizers.difference(&old_finalizers).copied().collect();
        if !added.is_empty() {
            let detail = format!(
                "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                go_strings(Some(&added))
            );
            errs.forbidden(&path.child("finalizers"), detail);
        }
    }
    immutable_text(errs, &path.child("name"), text(meta, "name"), text(old_meta, "name"));
    immutable_text(errs, &path.child("namespace"), text(meta, "namespace"), text(old_meta, "namespace"));
    if let Some(uid) = opt_text(meta, "uid").filter(|uid| !uid.is_empty()) {
        immutable_text(errs, &path.child("uid"), uid, text(old_meta, "uid"));
    }
    for key in ["creationTimestamp", "deletionTimestamp"] {
        let old_time = opt_text(old_meta, key);
        if key == "deletionTimestamp" && old_time.is_some() {
            continue;
        }
        if let Some(new_time) = opt_text(meta, key).filter(|time| Some(*time) != old_time) {
            errs.invalid_go(&path.child(key), go_time(new_time), IMMUTABLE_MESSAGE);
        }
    }
    let old_grace = int(old_meta, "deletionGracePeriodSeconds");
    if let Some(grace) = int(meta, "deletionGracePeriodSeconds").filter(|grace| Some(*grace) != old_grace) {
        errs.invalid(&path.child("deletionGracePeriodSeconds"), grace, IMMUTABLE_MESSAGE);
    }
}

/// Go's `time.Time.String()` for an RFC 3339 timestamp, as upstream prints a metav1.Time.
fn go_time(timestamp: &str) -> String {
    match timestamp.parse::<jiff::Timestamp>() {
        Ok(parsed) => format!("{} +0000 UTC", parsed.strftime("%Y-%m-%d %H:%M:%S")),
        Err(_) => go_quote(timestamp),
    }
}

fn labels(errs: &mut Errors, path: &Path, labels: &BTreeMap<&str, &str>) {
    for (key, value) in labels {
        qualified_name(errs, path, key);
        for message in is_label_value(value) {
            errs.invalid(path, *value, message);
        }
    }
}

fn annotations(errs: &mut Errors, path: &Path, annotations: &BTreeMap<&str, &str>) {
    // The rule is a qualified name, except that case does not matter.
    for key in annotations.keys() {
        for message in is_qualified_name(&key.to_lowercase()) {
            errs.invalid(path, *key, message);
        }
    }
    let total_bytes: usize = annotations.iter().map(|(key, value)| key.len() + value.len()).sum();
    if total_bytes > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES {
        errs.too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT_BYTES);
    }
}

fn owner_references(errs: &mut Errors, path: &Path, references: &[Value]) {
    let mut first_controller: Option<String> = None;
    for reference in references {
        let (api_version, kind, name) =
            (text(reference, "apiVersion"), text(reference, "kind"), text(reference, "name"));
        // schema.ParseGroupVersion: more than one '/' leaves no version at all.
        let (group, version) = match api_version.matches('/').count() {
            0 => ("", api_version),
            1 => api_version.split_once('/').unwrap_or(("", "")),
            _ => ("", ""),
        };
        if version.is_empty() {
            errs.invalid(&path.child("apiVersion"), api_version, "version must not be empty");
        }
        if kind.is_empty() {
            errs.invalid(&path.child("kind"), kind, "must not be empty");
        }
        if name.is_empty() {
            errs.invalid(&path.child("name"), name, "must not be empty");
        }
        if text(reference, "uid").is_empty() {
            errs.invalid(&path.child("uid"), text(reference, "uid"), "must not be empty");
        }
        if group.is_empty() && version == "v1" && kind == "Event" {
            errs.invalid_go(
                path,
                go_owner_reference(reference),
                "/v1, Kind=Event is disallowed from being an owner",
            );
        }
        if flag(reference, "controller") {
            let current = format!("{kind}/{name}");
            match &first_controller {
                Some(first) => {
                    let rendered: Vec<String> = references.iter().map(go_owner_reference).collect();
                    let detail = format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    );
                    errs.invalid_go(path, format!("[]v1.OwnerReference{{{}}}", rendered.join(", ")), detail);
                }
                None => first_controller = Some(current),
            }
        }
    }
}

fn go_owner_reference(reference: &Value) -> String {
    let go_bool = |key: &str| match reference.get(key).and_then(Value::as_bool) {
        Some(value) => format!("(*bool)({value})"),
        None => "(*bool)(nil)".to_string(),
    };
    format!(
        "v1.OwnerReference{{APIVersion:{}, Kind:{}, Name:{}, UID:{}, Controller:{}, BlockOwnerDeletion:{}}}",
        go_quote(text(reference, "apiVersion")),
        go_quote(text(reference, "kind")),
        go_quote(text(reference, "name")),
        go_quote(text(reference, "uid")),
        go_bool("controller"),
        go_bool("blockOwnerDeletion"),
    )
}

fn finalizers(errs: &mut Errors, path: &Path, finalizers: &[&str]) {
    for finalizer in finalizers {
        qualified_name(errs, path, finalizer);
    }
    if finalizers.contains(&"orphan") && finalizers.contains(&"foregroundDeletion") {
        errs.invalid_go(
            path,
            go_strings(Some(finalizers)),
            "finalizer orphan and foregroundDeletion cannot be both set",
        );
    }
}

fn kube_finalizer_name(errs: &mut Errors, path: &Path, finalizer: &str) {
    if !finalizer.contains('/') && !STANDARD_FINALIZERS.contains(&finalizer) {
        errs.invalid(path, finalizer, "name is neither a standard finalizer name nor is it fully qualified");
    }
}

// ---- Label selectors: metav1 validation, and matching ----

/// ValidateLabelSelector, strict about values (as Deployments, ReplicaSets and pods use it).
fn label_selector(errs: &mut Errors, path: &Path, selector: &Value) {
    labels(errs, &path.child("matchLabels"), &string_map(selector, "matchLabels"));
    for (index, requirement) in list(selector, "matchExpressions").iter().enumerate() {
        let path = path.child("matchExpressions").index(index);
        let operator = text(requirement, "operator");
        let values = strings(requirement, "values");
        match operator {
            "In" | "NotIn" if values.is_empty() => {
                errs.required(&path.child("values"), "must be specified when `operator` is 'In' or 'NotIn'");
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                errs.forbidden(
                    &path.child("values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                );
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            _ => errs.invalid(&path.child("operator"), operator, "not a valid selector operator"),
        }
        qualified_name(errs, &path.child("key"), text(requirement, "key"));
        for (value_index, value) in values.iter().enumerate() {
            for message in is_label_value(value) {
                errs.invalid(&path.child("values").index(value_index), *value, message);
            }
        }
    }
}

/// Whether metav1.LabelSelectorAsSelector accepts `selector`.
fn selector_converts(selector: &Value) -> bool {
    let mut scratch = Errors::default();
    label_selector(&mut scratch, &Path::root("selector"), selector);
    scratch.len() == 0
}

fn selector_is_empty(selector: &Value) -> bool {
    string_map(selector, "matchLabels").is_empty() && list(selector, "matchExpressions").is_empty()
}

/// Whether `selector` (a metav1.LabelSelector) selects `labels`; one it cannot parse selects
/// nothing (its own errors are reported by `label_selector`).
fn selector_matches(selector: &Value, labels: &BTreeMap<&str, &str>) -> bool {
    let Ok(selector) = serde_json::from_value(selector.clone()) else { return false };
    let Ok(selector) = crate::selectors::LabelSelector::from_api(&selector) else { return false };
    let labels = labels.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
    selector.matches(&labels)
}

// ---- Pods and pod templates: core validation's ValidatePodSpec and what it calls ----

const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
const POD_DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";
const FILE_MODE_MESSAGE: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const MAX_FILE_MODE: i64 = 0o777;
const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;
const MAX_USER_OR_GROUP_ID: i64 = 0xffff_ffff;
/// The fields a pod update may change, as upstream lists them in its Forbidden message.
const UPDATABLE_POD_SPEC_FIELDS: [&str; 5] = [
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];
/// The fields an env var's fieldRef may name.
const ENV_FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
/// The fields a downwardAPI volume file's fieldRef may name.
const VOLUME_FIELD_PATHS: [&str; 5] =
    ["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"];
/// The fields the v1 downward API converts at all (pods' field labels).
const DOWNWARD_API_FIELD_LABELS: [&str; 14] = [
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const CONTAINER_RESOURCE_FIELDS: [&str; 6] = [
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];
/// Volume sources in upstream's order, each with the path upstream reports a second source at.
const VOLUME_SOURCES: [(&str, &str); 30] = [
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

fn pod(errs: &mut Errors, object: &Value, scope: Scope<'_>) {
    object_meta(errs, object, scope.namespaced, NameRule::Subdomain, true);
    let meta = metadata(object);
    let spec = get(object, "spec").unwrap_or(&Value::Null);
    let spec_path = Path::root("spec");
    pod_specific_annotations(errs, meta, spec, &Path::root("metadata").child("annotations"));
    let options = PodSpecOptions { resource_is_pod: true, pod_name: text(meta, "name") };
    pod_spec(errs, spec, &spec_path, options);
    if text(spec, "serviceAccountName").is_empty() {
        for (volume_index, volume) in list(spec, "volumes").iter().enumerate() {
            let Some(projected) = get(volume, "projected") else { continue };
            for (source_index, source) in list(projected, "sources").iter().enumerate() {
                if get(source, "serviceAccountToken").is_some() {
                    let path = spec_path.child("volumes").index(volume_index).child("projected");
                    let path = path.child("sources").index(source_index).child("serviceAccountToken");
                    errs.forbidden(&path, "must not be specified when serviceAccountName is not set");
                }
            }
        }
    }
    for key in ["containers", "initContainers"] {
        for (index, container) in list(spec, key).iter().enumerate() {
            let image = text(container, "image");
            if image.trim().len() != image.len() {
                let path = spec_path.child(key).index(index).child("image");
                errs.invalid(&path, image, "must not have leading or trailing whitespace");
            }
        }
    }
    match scope.old {
        None => {
            if !list(spec, "ephemeralContainers").is_empty() {
                errs.forbidden(&spec_path.child("ephemeralContainers"), "cannot be set on create");
            }
            if !text(spec, "nodeName").is_empty() && !list(spec, "schedulingGates").is_empty() {
                errs.forbidden(
                    &spec_path.child("nodeName"),
                    "cannot be set until all schedulingGates have been cleared",
                );
            }
        }
        Some(old) => pod_update(errs, object, old),
    }
}

fn pod_specific_annotations(errs: &mut Errors, meta: &Value, spec: &Value, path: &Path) {
    let annotations = string_map(meta, "annotations");
    if let Some(value) = annotations.get(MIRROR_POD_ANNOTATION)
        && text(spec, "nodeName").is_empty()
    {
        errs.invalid(
            &path.key(MIRROR_POD_ANNOTATION),
            *value,
            "must set spec.nodeName if mirror pod annotation is set",
        );
    }
    if let Some(value) = annotations.get(POD_DELETION_COST_ANNOTATION)
        && value.parse::<i32>().is_err()
    {
        errs.invalid(&path.key(POD_DELETION_COST_ANNOTATION), *value, "must be a 32bit integer");
    }
}

/// ValidatePodUpdate's own checks; the spec itself was validated in full before.
fn pod_update(errs: &mut Errors, pod: &Value, old: &Value) {
    let (spec, old_spec) =
        (get(pod, "spec").unwrap_or(&Value::Null), get(old, "spec").unwrap_or(&Value::Null));
    let spec_path = Path::root("spec");
    mirror_annotation_update(errs, pod, old);
    for key in ["containers", "initContainers"] {
        let (new, old) = (list(spec, key), list(old_spec, key));
        if new.len() != old.len() {
            errs.forbidden(&spec_path.child(key), "pod updates may not add or remove containers");
            return;
        }
        for (index, container) in new.iter().enumerate() {
            if text(container, "image").is_empty() {
                errs.required(&spec_path.child(key).index(index).child("image"), "");
            }
        }
    }
    let deadline_path = spec_path.child("activeDeadlineSeconds");
    match (int(spec, "activeDeadlineSeconds"), int(old_spec, "activeDeadlineSeconds")) {
        (Some(new), _) if !(0..=i64::from(i32::MAX)).contains(&new) => {
            errs.invalid(&deadline_path, new, inclusive_range_error(0, i64::from(i32::MAX)));
            return;
        }
        (Some(new), Some(old)) if old < new => {
            errs.invalid(&deadline_path, new, "must be less than or equal to previous value");
            return;
        }
        (None, Some(_)) => {
            errs.invalid(&deadline_path, "null", "must not update from a positive integer to nil value")
        }
        _ => {}
    }
    let new_tolerations = list(spec, "tolerations");
    let without_seconds = |toleration: &Value| {
        let mut toleration = toleration.clone();
        if let Some(map) = toleration.as_object_mut() {
            map.remove("tolerationSeconds");
        }
        normalized(&toleration)
    };
    let kept = list(old_spec, "tolerations")
        .iter()
        .all(|old| new_tolerations.iter().any(|new| without_seconds(new) == without_seconds(old)));
    if !kept {
        errs.forbidden(
            &spec_path.child("tolerations"),
            "existing toleration can not be modified except its tolerationSeconds",
        );
    }
    let old_gates: BTreeSet<&str> =
        list(old_spec, "schedulingGates").iter().map(|gate| text(gate, "name")).collect();
    for (index, gate) in list(spec, "schedulingGates").iter().enumerate() {
        let name = text(gate, "name");
        if !old_gates.contains(name) {
            let detail = format!("only deletion is allowed, but found new scheduling gate '{name}'");
            errs.forbidden(&spec_path.child("schedulingGates").index(index).child("name"), detail);
        }
    }
    pod_spec_unchanged(errs, spec, old_spec, &spec_path);
}

/// The mirror pod annotation (a static pod's) can be neither added, changed nor removed.
fn mirror_annotation_update(errs: &mut Errors, pod: &Value, old: &Value) {
    let path = Path::root("metadata").child("annotations").key(MIRROR_POD_ANNOTATION);
    let (new, old) = (
        string_map(metadata(pod), "annotations").get(MIRROR_POD_ANNOTATION).copied(),
        string_map(metadata(old), "annotations").get(MIRROR_POD_ANNOTATION).copied(),
    );
    match (new, old) {
        (Some(_), None) => errs.forbidden(&path, "may not add mirror pod annotation"),
        (new, Some(old)) if new != Some(old) => {
            errs.forbidden(&path, "may not remove or update mirror pod annotation");
        }
        _ => {}
    }
}

/// Everything but the updatable fields must be as before (upstream munges the new spec with
/// the old values of those fields, then compares).
fn pod_spec_unchanged(errs: &mut Errors, spec: &Value, old_spec: &Value, spec_path: &Path) {
    let mut munged = spec.clone();
    let Some(munged_map) = munged.as_object_mut() else { return };
    for key in ["containers", "initContainers"] {
        let old_containers = list(old_spec, key);
        if let Some(containers) = munged_map.get_mut(key).and_then(Value::as_array_mut) {
            for (container, old) in containers.iter_mut().zip(old_containers) {
                if let (Some(container), Some(image)) = (container.as_object_mut(), old.get("image")) {
                    container.insert("image".into(), image.clone());
                }
            }
        }
    }
    for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
        match old_spec.get(key) {
            Some(old) => munged_map.insert(key.into(), old.clone()),
            None => munged_map.remove(key),
        };
    }
    let old_grace = int(old_spec, "terminationGracePeriodSeconds");
    if old_grace.is_some_and(|grace| grace < 0) && int(spec, "terminationGracePeriodSeconds") == Some(1) {
        munged_map.insert("terminationGracePeriodSeconds".into(), Value::from(old_grace));
    }
    if !list(old_spec, "schedulingGates").is_empty() {
        // A gated pod may gain node selector entries and change its node affinity.
        let (selector, old_selector) =
            (string_map(spec, "nodeSelector"), string_map(old_spec, "nodeSelector"));
        if old_selector.iter().any(|(key, value)| selector.get(key) != Some(value)) {
            let rendered = go_string_map(get(spec, "nodeSelector").map(|_| &selector));
            let detail = "only additions to spec.nodeSelector are allowed (no mutations or deletions)";
            errs.invalid_go(&spec_path.child("nodeSelector"), rendered, detail);
        }
        for key in ["nodeSelector", "affinity"] {
            match old_spec.get(key) {
                Some(old) => munged_map.insert(key.into(), old.clone()),
                None => munged_map.remove(key),
            };
        }
    }
    if same(Some(&munged), Some(old_spec)) {
        return;
    }
    let mut diff = String::new();
    let keys: BTreeSet<&String> =
        munged.as_object().into_iter().chain(old_spec.as_object()).flat_map(Map::keys).collect();
    for key in keys {
        let (new, old) = (munged.get(key), old_spec.get(key));
        if !same(new, old) {
            for (sign, value) in [('-', old), ('+', new)] {
                if let Some(value) = value.and_then(normalized) {
                    let _ = writeln!(diff, "{sign} {key}: {value}");
                }
            }
        }
    }
    let detail = format!(
        "pod updates may not change fields other than {}\n{diff}",
        UPDATABLE_POD_SPEC_FIELDS.join(",")
    );
    errs.forbidden(spec_path, detail);
}

#[derive(Clone, Copy)]
struct PodSpecOptions<'a> {
    /// The spec is a Pod's, not a template's: host ports must then match container ports.
    resource_is_pod: bool,
    /// The pod's name (empty for a template), for the claims of ephemeral volumes.
    pod_name: &'a str,
}

/// The volumes of a pod spec by name, with the JSON key of each one's source.
type Volumes<'a> = BTreeMap<&'a str, &'static str>;

fn pod_spec(errs: &mut Errors, spec: &Value, path: &Path, options: PodSpecOptions<'_>) {
    let grace_period = int(spec, "terminationGracePeriodSeconds");
    if get(spec, "terminationGracePeriodSeconds").is_none() {
        errs.required(&path.child("terminationGracePeriodSeconds"), "");
    }
    let volumes = volumes(errs, list(spec, "volumes"), &path.child("volumes"), options.pod_name);
    let claim_names = pod_resource_claims(errs, list(spec, "resourceClaims"), &path.child("resourceClaims"));
    let context = ContainerContext { volumes: &volumes, claim_names: &claim_names, grace_period };
    containers(errs, list(spec, "containers"), &path.child("containers"), &context);
    init_containers(errs, spec, &path.child("initContainers"), &context);
    ephemeral_containers(errs, spec, &path.child("ephemeralContainers"), &context);
    host_network_ports(errs, spec, path, options);
    pod_spec_policies(errs, spec, path);
    pod_spec_scheduling(errs, spec, path);
}

/// With hostNetwork a container port is a host port: a pod's must say so, a template's may.
fn host_network_ports(errs: &mut Errors, spec: &Value, path: &Path, options: PodSpecOptions<'_>) {
    if flag(spec, "hostNetwork") {
        for (container_index, container) in list(spec, "containers").iter().enumerate() {
            for (port_index, port) in list(container, "ports").iter().enumerate() {
                let (host_port, container_port) =
                    (int(port, "hostPort").unwrap_or(0), int(port, "containerPort").unwrap_or(0));
                if (options.resource_is_pod || host_port != 0) && host_port != container_port {
                    let port_path =
                        path.child("containers").index(container_index).child("ports").index(port_index);
                    errs.invalid(
                        &port_path.child("hostPort"),
                        host_port,
                        "must match `containerPort` when `hostNetwork` is true",
                    );
                }
            }
        }
    }
}

fn pod_spec_policies(errs: &mut Errors, spec: &Value, path: &Path) {
    let restart_policy_path = path.child("restartPolicy");
    match text(spec, "restartPolicy") {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.required(&restart_policy_path, ""),
        other => errs.not_supported(&restart_policy_path, other, &["Always", "OnFailure", "Never"]),
    }
    match text(spec, "dnsPolicy") {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.required(&path.child("dnsPolicy"), ""),
        other => {
            errs.not_supported(
                &path.child("dnsPolicy"),
                other,
                &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
            );
        }
    }
    labels(errs, &path.child("nodeSelector"), &string_map(spec, "nodeSelector"));
    pod_security_context(errs, spec, &path.child("securityContext"));
    dns_config(errs, spec, &path.child("dnsConfig"));
    for (index, gate) in list(spec, "readinessGates").iter().enumerate() {
        qualified_name(
            errs,
            &path.child("readinessGates").index(index).child("conditionType"),
            text(gate, "conditionType"),
        );
    }
    let mut gates = BTreeSet::new();
    for (index, gate) in list(spec, "schedulingGates").iter().enumerate() {
        let gate_path = path.child("schedulingGates").index(index);
        qualified_name(errs, &gate_path, text(gate, "name"));
        if !gates.insert(text(gate, "name")) {
            errs.duplicate(&gate_path, text(gate, "name"));
        }
    }
    topology_spread_constraints(
        errs,
        list(spec, "topologySpreadConstraints"),
        &path.child("topologySpreadConstraints"),
    );
}

/// The names, deadlines and placement fields of a pod spec.
fn pod_spec_scheduling(errs: &mut Errors, spec: &Value, path: &Path) {
    for key in ["serviceAccountName", "nodeName", "priorityClassName"] {
        let value = text(spec, key);
        if !value.is_empty() {
            dns1123_subdomain(errs, &path.child(key), value);
        }
    }
    if let Some(deadline) = int(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(i32::MAX)).contains(&deadline)
    {
        errs.invalid(
            &path.child("activeDeadlineSeconds"),
            deadline,
            inclusive_range_error(1, i64::from(i32::MAX)),
        );
    }
    for key in ["hostname", "subdomain"] {
        let value = text(spec, key);
        if !value.is_empty() {
            dns1123_label(errs, &path.child(key), value);
        }
    }
    tolerations(errs, list(spec, "tolerations"), &path.child("tolerations"));
    for (index, alias) in list(spec, "hostAliases").iter().enumerate() {
        let alias_path = path.child("hostAliases").index(index);
        valid_ip(errs, &alias_path.child("ip"), text(alias, "ip"));
        for (hostname_index, hostname) in strings(alias, "hostnames").iter().enumerate() {
            dns1123_subdomain(errs, &alias_path.child("hostnames").index(hostname_index), hostname);
        }
    }
    if let Some(runtime_class) = opt_text(spec, "runtimeClassName") {
        dns1123_subdomain(errs, &path.child("runtimeClassName"), runtime_class);
    }
    match opt_text(spec, "preemptionPolicy") {
        None | Some("PreemptLowerPriority" | "Never") => {}
        Some("") => errs.required(&path.child("preemptionPolicy"), ""),
        Some(other) => {
            errs.not_supported(&path.child("preemptionPolicy"), other, &["PreemptLowerPriority", "Never"])
        }
    }
    if let Some(os) = get(spec, "os") {
        match text(os, "name") {
            "" => errs.required(&path.child("os").child("name"), "cannot be empty"),
            "linux" | "windows" => {}
            other => errs.not_supported(&path.child("os"), other, &["linux", "windows"]),
        }
    }
}

fn pod_resource_claims<'a>(errs: &mut Errors, claims: &'a [Value], path: &Path) -> BTreeSet<&'a str> {
    let mut names = BTreeSet::new();
    for (index, claim) in claims.iter().enumerate() {
        let claim_path = path.index(index);
        let name = text(claim, "name");
        if name.is_empty() {
            errs.required(&claim_path.child("name"), "");
        } else if names.contains(name) {
            errs.duplicate(&claim_path.child("name"), name);
        } else {
            dns1123_label(errs, &claim_path.child("name"), name);
            names.insert(name);
        }
        let (claim_name, template_name) =
            (opt_text(claim, "resourceClaimName"), opt_text(claim, "resourceClaimTemplateName"));
        match (claim_name, template_name) {
            (Some(_), Some(_)) => errs.invalid_go(
                &claim_path,
                claim.to_string(),
                "at most one of `resourceClaimName` or `resourceClaimTemplateName` may be specified",
            ),
            (None, None) => errs.invalid_go(
                &claim_path,
                claim.to_string(),
                "must specify one of: `resourceClaimName`, `resourceClaimTemplateName`",
            ),
            _ => {}
        }
        for (key, value) in [("resourceClaimName", claim_name), ("resourceClaimTemplateName", template_name)]
        {
            if let Some(value) = value {
                dns1123_subdomain(errs, &claim_path.child(key), value);
            }
        }
    }
    names
}

/// What every container's validation needs from its pod spec.
struct ContainerContext<'a> {
    volumes: &'a Volumes<'a>,
    claim_names: &'a BTreeSet<&'a str>,
    grace_period: Option<i64>,
}

fn containers(errs: &mut Errors, containers: &[Value], path: &Path, context: &ContainerContext<'_>) {
    if containers.is_empty() {
        errs.required(path, "");
        return;
    }
    let mut names = BTreeSet::new();
    for (index, container) in containers.iter().enumerate() {
        let container_path = path.index(index);
        container_common(errs, container, &container_path, context);
        if !names.insert(text(container, "name")) {
            errs.duplicate(&container_path.child("name"), text(container, "name"));
        }
        lifecycle_and_probes(errs, container, &container_path, context.grace_period);
        if get(container, "restartPolicy").is_some() {
            errs.forbidden(&container_path.child("restartPolicy"), "may not be set for non-init containers");
        }
    }
    host_port_conflicts(errs, containers.iter().enumerate(), path);
}

fn init_containers(errs: &mut Errors, spec: &Value, path: &Path, context: &ContainerContext<'_>) {
    let mut names: BTreeSet<&str> =
        list(spec, "containers").iter().map(|container| text(container, "name")).collect();
    for (index, container) in list(spec, "initContainers").iter().enumerate() {
        let container_path = path.index(index);
        container_common(errs, container, &container_path, context);
        let restart_always = match opt_text(container, "restartPolicy") {
            None => false,
            Some("Always") => true,
            Some(other) => {
                errs.not_supported(&container_path.child("restartPolicy"), other, &["Always"]);
                false
            }
        };
        let name = text(container, "name");
        if names.contains(name) {
            errs.duplicate(&container_path.child("name"), name);
        } else if !name.is_empty() {
            names.insert(name);
        }
        host_port_conflicts(errs, [(index, container)].into_iter(), path);
        if restart_always {
            lifecycle_and_probes(errs, container, &container_path, context.grace_period);
        } else {
            for key in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
                if get(container, key).is_some() {
                    errs.forbidden(
                        &container_path.child(key),
                        "may not be set for init containers without restartPolicy=Always",
                    );
                }
            }
        }
    }
}

fn ephemeral_containers(errs: &mut Errors, spec: &Value, path: &Path, context: &ContainerContext<'_>) {
    let other_names: BTreeSet<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|key| list(spec, key))
        .map(|container| text(container, "name"))
        .collect();
    let mut names = other_names.clone();
    for (index, container) in list(spec, "ephemeralContainers").iter().enumerate() {
        let container_path = path.index(index);
        container_common(errs, container, &container_path, context);
        let name = text(container, "name");
        if !names.insert(name) {
            errs.duplicate(&container_path.child("name"), name);
        }
        let target = text(container, "targetContainerName");
        if !target.is_empty() && !other_names.contains(target) {
            errs.not_found(&container_path.child("targetContainerName"), target);
        }
        for key in [
            "ports",
            "resources",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "lifecycle",
            "resizePolicy",
            "restartPolicy",
        ] {
            if container.get(key).and_then(normalized).is_some() {
                errs.forbidden(&container_path.child(key), "cannot be set for an Ephemeral Container");
            }
        }
        for (mount_index, mount) in list(container, "volumeMounts").iter().enumerate() {
            for key in ["subPath", "subPathExpr"] {
                if !text(mount, key).is_empty() {
                    let mount_path = container_path.child("volumeMounts").index(mount_index).child(key);
                    errs.forbidden(&mount_path, "cannot be set for an Ephemeral Container");
                }
            }
        }
    }
}

/// Two containers may not claim the same host port (per protocol and host IP).
fn host_port_conflicts<'a>(
    errs: &mut Errors,
    containers: impl Iterator<Item = (usize, &'a Value)>,
    path: &Path,
) {
    let mut seen = BTreeSet::new();
    for (container_index, container) in containers {
        for (port_index, port) in list(container, "ports").iter().enumerate() {
            let host_port = int(port, "hostPort").unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!("{}/{}/{host_port}", text(port, "protocol"), text(port, "hostIP"));
            if seen.contains(&key) {
                let port_path = path.index(container_index).child("ports").index(port_index);
                errs.duplicate(&port_path.child("hostPort"), key);
            } else {
                seen.insert(key);
            }
        }
    }
}

fn container_common(errs: &mut Errors, container: &Value, path: &Path, context: &ContainerContext<'_>) {
    let name = text(container, "name");
    if name.is_empty() {
        errs.required(&path.child("name"), "");
    } else {
        dns1123_label(errs, &path.child("name"), name);
    }
    if text(container, "image").is_empty() {
        errs.required(&path.child("image"), "");
    }
    match text(container, "terminationMessagePolicy") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.required(&path.child("terminationMessagePolicy"), ""),
        other => errs.not_supported(
            &path.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        ),
    }
    container_ports(errs, list(container, "ports"), &path.child("ports"));
    env(errs, list(container, "env"), &path.child("env"));
    env_from(errs, list(container, "envFrom"), &path.child("envFrom"));
    volume_mounts(errs, container, context.volumes, &path.child("volumeMounts"));
    volume_devices(errs, container, context.volumes, &path.child("volumeDevices"));
    match text(container, "imagePullPolicy") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.required(&path.child("imagePullPolicy"), ""),
        other => {
            errs.not_supported(&path.child("imagePullPolicy"), other, &["Always", "IfNotPresent", "Never"])
        }
    }
    if let Some(resources) = get(container, "resources") {
        resource_requirements(errs, resources, context.claim_names, &path.child("resources"));
    }
    security_context(errs, get(container, "securityContext"), &path.child("securityContext"));
}

fn container_ports(errs: &mut Errors, ports: &[Value], path: &Path) {
    let mut names = BTreeSet::new();
    for (index, port) in ports.iter().enumerate() {
        let port_path = path.index(index);
        let name = text(port, "name");
        if !name.is_empty() {
            let messages = is_valid_port_name(name);
            if !messages.is_empty() {
                for message in messages {
                    errs.invalid(&port_path.child("name"), name, message);
                }
            } else if !names.insert(name) {
                errs.duplicate(&port_path.child("name"), name);
            }
        }
        match int(port, "containerPort") {
            None | Some(0) => errs.required(&port_path.child("containerPort"), ""),
            Some(number) => {
                for message in is_valid_port_number(number) {
                    errs.invalid(&port_path.child("containerPort"), number, message);
                }
            }
        }
        if let Some(host_port) = int(port, "hostPort").filter(|port| *port != 0) {
            for message in is_valid_port_number(host_port) {
                errs.invalid(&port_path.child("hostPort"), host_port, message);
            }
        }
        protocol(errs, &port_path.child("protocol"), text(port, "protocol"));
    }
}

fn protocol(errs: &mut Errors, path: &Path, protocol: &str) {
    match protocol {
        "TCP" | "UDP" | "SCTP" => {}
        "" => errs.required(path, ""),
        other => errs.not_supported(path, other, &["SCTP", "TCP", "UDP"]),
    }
}

fn env(errs: &mut Errors, variables: &[Value], path: &Path) {
    for (index, variable) in variables.iter().enumerate() {
        let variable_path = path.index(index);
        let name = text(variable, "name");
        if name.is_empty() {
            errs.required(&variable_path.child("name"), "");
        } else {
            for message in is_relaxed_env_var_name(name) {
                errs.invalid(&variable_path.child("name"), name, message);
            }
        }
        let Some(from) = get(variable, "valueFrom") else { continue };
        let from_path = variable_path.child("valueFrom");
        let mut sources = 0;
        if let Some(field_ref) = get(from, "fieldRef") {
            sources += 1;
            object_field_selector(errs, field_ref, &ENV_FIELD_PATHS, &from_path.child("fieldRef"));
        }
        if let Some(resource_ref) = get(from, "resourceFieldRef") {
            sources += 1;
            resource_field_selector(errs, resource_ref, false, &from_path.child("resourceFieldRef"));
        }
        for key in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(selector) = get(from, key) {
                sources += 1;
                key_selector(errs, selector, &from_path.child(key));
            }
        }
        if sources == 0 {
            errs.invalid(
                &from_path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            );
        } else if !text(variable, "value").is_empty() {
            errs.invalid(&from_path, "", "may not be specified when `value` is not empty");
        } else if sources > 1 {
            errs.invalid(&from_path, "", "may not have more than one field specified at a time");
        }
    }
}

fn object_field_selector(errs: &mut Errors, selector: &Value, supported: &[&str], path: &Path) {
    let (api_version, field_path) = (text(selector, "apiVersion"), text(selector, "fieldPath"));
    if api_version.is_empty() {
        errs.required(&path.child("apiVersion"), "");
        return;
    }
    if field_path.is_empty() {
        errs.required(&path.child("fieldPath"), "");
        return;
    }
    let subscripted = field_path
        .strip_suffix("']")
        .and_then(|rest| rest.split_once("['"))
        .filter(|(prefix, _)| matches!(*prefix, "metadata.annotations" | "metadata.labels"));
    let conversion_error = if api_version != "v1" {
        Some(format!("unsupported pod version: {api_version}"))
    } else if subscripted.is_none() && !DOWNWARD_API_FIELD_LABELS.contains(&field_path) {
        Some(format!("field label not supported: {field_path}"))
    } else {
        None
    };
    if let Some(error) = conversion_error {
        errs.invalid(&path.child("fieldPath"), field_path, format!("error converting fieldPath: {error}"));
        return;
    }
    match subscripted {
        Some(("metadata.annotations", subscript)) => qualified_name(errs, path, &subscript.to_lowercase()),
        Some((_, subscript)) => qualified_name(errs, path, subscript),
        None if !supported.contains(&field_path) => {
            let mut valid = supported.to_vec();
            valid.sort_unstable();
            errs.not_supported(&path.child("fieldPath"), field_path, &valid);
        }
        None => {}
    }
}

fn resource_field_selector(errs: &mut Errors, selector: &Value, volume: bool, path: &Path) {
    let resource = text(selector, "resource");
    if volume && text(selector, "containerName").is_empty() {
        errs.required(&path.child("containerName"), "");
    } else if resource.is_empty() {
        errs.required(&path.child("resource"), "");
    } else if !CONTAINER_RESOURCE_FIELDS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        errs.not_supported(&path.child("resource"), resource, &CONTAINER_RESOURCE_FIELDS);
    }
}

/// A configMapKeyRef or secretKeyRef.
fn key_selector(errs: &mut Errors, selector: &Value, path: &Path) {
    let name = text(selector, "name");
    for message in is_dns1123_subdomain(name) {
        errs.invalid(&path.child("name"), name, message);
    }
    let key = text(selector, "key");
    if key.is_empty() {
        errs.required(&path.child("key"), "");
    } else {
        for message in is_config_map_key(key) {
            errs.invalid(&path.child("key"), key, message);
        }
    }
}

fn env_from(errs: &mut Errors, sources: &[Value], path: &Path) {
    for (index, source) in sources.iter().enumerate() {
        let source_path = path.index(index);
        let prefix = text(source, "prefix");
        if !prefix.is_empty() {
            for message in is_relaxed_env_var_name(prefix) {
                errs.invalid(&source_path.child("prefix"), prefix, message);
            }
        }
        let mut count = 0;
        for key in ["configMapRef", "secretRef"] {
            let Some(reference) = get(source, key) else { continue };
            count += 1;
            let name = text(reference, "name");
            if name.is_empty() {
                errs.required(&source_path.child(key).child("name"), "");
            } else {
                for message in name_messages(NameRule::Subdomain, name, true) {
                    errs.invalid(&source_path.child(key).child("name"), name, message);
                }
            }
        }
        match count {
            0 => errs.invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"),
            1 => {}
            _ => errs.invalid(path, "", "may not have more than one field specified at a time"),
        }
    }
}

fn volume_mounts(errs: &mut Errors, container: &Value, volumes: &Volumes<'_>, path: &Path) {
    let devices: BTreeMap<&str, &str> = list(container, "volumeDevices")
        .iter()
        .map(|device| (text(device, "name"), text(device, "devicePath")))
        .collect();
    let mut mount_points = BTreeSet::new();
    for (index, mount) in list(container, "volumeMounts").iter().enumerate() {
        let mount_path = path.index(index);
        let (name, target) = (text(mount, "name"), text(mount, "mountPath"));
        if name.is_empty() {
            errs.required(&mount_path.child("name"), "");
        }
        if !volumes.contains_key(name) {
            errs.not_found(&mount_path.child("name"), name);
        }
        if target.is_empty() {
            errs.required(&mount_path.child("mountPath"), "");
        }
        if !mount_points.insert(target) {
            errs.invalid(&mount_path.child("mountPath"), target, "must be unique");
        }
        if devices.contains_key(name) {
            errs.invalid(&mount_path.child("name"), name, "must not already exist in volumeDevices");
        }
        if devices.values().any(|device_path| *device_path == target) {
            errs.invalid(
                &mount_path.child("mountPath"),
                target,
                "must not already exist as a path in volumeDevices",
            );
        }
        let (sub_path, sub_path_expr) = (text(mount, "subPath"), text(mount, "subPathExpr"));
        if volumes.get(name) == Some(&"image") {
            for (key, value) in [("subPath", sub_path), ("subPathExpr", sub_path_expr)] {
                if !value.is_empty() {
                    errs.invalid(&mount_path.child(key), value, "not allowed in image volume sources");
                }
            }
        }
        // Upstream reports these without the mount's index.
        if !sub_path.is_empty() {
            local_descending_path(errs, &path.child("subPath"), sub_path);
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.invalid(
                    &mount_path.child("subPathExpr"),
                    sub_path_expr,
                    "subPathExpr and subPath are mutually exclusive",
                );
            }
            local_descending_path(errs, &path.child("subPathExpr"), sub_path_expr);
        }
    }
}

fn volume_devices(errs: &mut Errors, container: &Value, volumes: &Volumes<'_>, path: &Path) {
    let mounts: BTreeMap<&str, &str> = list(container, "volumeMounts")
        .iter()
        .map(|mount| (text(mount, "name"), text(mount, "mountPath")))
        .collect();
    let (mut names, mut device_paths) = (BTreeSet::new(), BTreeSet::new());
    for (index, device) in list(container, "volumeDevices").iter().enumerate() {
        let device_path = path.index(index);
        let (name, target) = (text(device, "name"), text(device, "devicePath"));
        if name.is_empty() {
            errs.required(&device_path.child("name"), "");
        }
        if names.contains(name) {
            errs.invalid(&device_path.child("name"), name, "must be unique");
        }
        match volumes.get(name) {
            None => errs.not_found(&device_path.child("name"), name),
            Some(&source) if source != "persistentVolumeClaim" && source != "ephemeral" => errs.invalid(
                &device_path.child("name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            ),
            Some(_) => {}
        }
        if target.is_empty() {
            errs.required(&device_path.child("devicePath"), "");
        }
        if device_paths.contains(target) {
            errs.invalid(&device_path.child("devicePath"), target, "must be unique");
        }
        if !target.is_empty() && has_backsteps(target) {
            errs.invalid(&device_path.child("devicePath"), target, "can not contain backsteps ('..')");
        } else {
            device_paths.insert(target);
        }
        if mounts.contains_key(name) {
            errs.invalid(&device_path.child("name"), name, "must not already exist in volumeMounts");
        }
        if mounts.values().any(|mount_path| *mount_path == target) {
            errs.invalid(
                &device_path.child("devicePath"),
                target,
                "must not already exist as a path in volumeMounts",
            );
        }
        if !name.is_empty() {
            names.insert(name);
        }
    }
}

fn has_backsteps(target: &str) -> bool {
    target.split('/').any(|part| part == "..")
}

fn local_descending_path(errs: &mut Errors, path: &Path, target: &str) {
    if target.starts_with('/') {
        errs.invalid(path, target, "must be a relative path");
    }
    if has_backsteps(target) {
        errs.invalid(path, target, "must not contain '..'");
    }
}

fn local_non_reserved_path(errs: &mut Errors, path: &Path, target: &str) {
    local_descending_path(errs, path, target);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.invalid(path, target, "must not start with '..'");
    }
}

fn lifecycle_and_probes(errs: &mut Errors, container: &Value, path: &Path, grace_period: Option<i64>) {
    if let Some(lifecycle) = get(container, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(handler) = get(lifecycle, key) {
                action(
                    errs,
                    handler,
                    grace_period,
                    &path.child("lifecycle").child(key),
                    &["exec", "httpGet", "tcpSocket", "sleep"],
                );
            }
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = get(container, key) else { continue };
        let probe_path = path.child(key);
        action(errs, probe, grace_period, &probe_path, &["exec", "httpGet", "tcpSocket", "grpc"]);
        for field in
            ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"]
        {
            non_negative(errs, &probe_path.child(field), int(probe, field));
        }
        if let Some(grace) = int(probe, "terminationGracePeriodSeconds").filter(|grace| *grace <= 0) {
            errs.invalid(&probe_path.child("terminationGracePeriodSeconds"), grace, "must be greater than 0");
        }
        if key == "readinessProbe" {
            if let Some(grace) = int(probe, "terminationGracePeriodSeconds") {
                let grace_path = probe_path.child("terminationGracePeriodSeconds");
                errs.invalid(&grace_path, grace, "must not be set for readinessProbes");
            }
        } else {
            let threshold = int(probe, "successThreshold").unwrap_or(0);
            if threshold != 1 {
                errs.invalid(&probe_path.child("successThreshold"), threshold, "must be 1");
            }
        }
    }
}

/// A probe's or lifecycle hook's handler: exactly one of `kinds`.
fn action(errs: &mut Errors, handler: &Value, grace_period: Option<i64>, path: &Path, kinds: &[&str]) {
    let mut found = 0;
    for &kind in kinds {
        let Some(body) = get(handler, kind) else { continue };
        let kind_path = path.child(kind);
        if found > 0 {
            errs.forbidden(&kind_path, "may not specify more than 1 handler type");
            continue;
        }
        found += 1;
        match kind {
            "exec" if list(body, "command").is_empty() => errs.required(&kind_path.child("command"), ""),
            "httpGet" => {
                if text(body, "path").is_empty() {
                    errs.required(&kind_path.child("path"), "");
                }
                port_number_or_name(errs, &kind_path.child("port"), int_or_string(body, "port"));
                let scheme = text(body, "scheme");
                if scheme != "HTTP" && scheme != "HTTPS" {
                    errs.not_supported(&kind_path.child("scheme"), scheme, &["HTTP", "HTTPS"]);
                }
                for header in list(body, "httpHeaders") {
                    let name = text(header, "name");
                    let valid = !name.is_empty()
                        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
                    if !valid {
                        let message = regex_error(
                            HTTP_HEADER_NAME_MESSAGE,
                            HTTP_HEADER_NAME_FORMAT,
                            &["X-Header-Name"],
                        );
                        errs.invalid(&kind_path.child("httpHeaders"), name, message);
                    }
                }
            }
            "tcpSocket" => port_number_or_name(errs, &kind_path.child("port"), int_or_string(body, "port")),
            "grpc" => port_number_or_name(
                errs,
                &kind_path.child("port"),
                Some(IntOrString::Int(int(body, "port").unwrap_or(0))),
            ),
            "sleep" => {
                let seconds = int(body, "seconds").unwrap_or(0);
                if let Some(grace) = grace_period
                    && (seconds < 0 || seconds > grace)
                {
                    let detail =
                        format!("must be non-negative and less than terminationGracePeriodSeconds ({grace})");
                    errs.invalid(&kind_path, seconds, detail);
                }
            }
            _ => {}
        }
    }
    if found == 0 {
        errs.required(path, "must specify a handler type");
    }
}

/// An IntOrString port: a number in range or a port name; absent reads as 0, like Go's zero value.
fn port_number_or_name(errs: &mut Errors, path: &Path, port: Option<IntOrString<'_>>) {
    match port.unwrap_or(IntOrString::Int(0)) {
        IntOrString::Int(number) => {
            for message in is_valid_port_number(number) {
                errs.invalid(path, number, message);
            }
        }
        IntOrString::Str(name) => {
            for message in is_valid_port_name(name) {
                errs.invalid(path, name, message);
            }
        }
    }
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && is_qualified_name(&format!("requests.{name}")).is_empty()
}

fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepages(name)
}

const STANDARD_RESOURCES: [&str; 20] = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

fn container_resource_name(errs: &mut Errors, path: &Path, name: &str) {
    let messages = is_qualified_name(name);
    let qualified = messages.is_empty();
    for message in messages {
        errs.invalid(path, name, message);
    }
    if !name.contains('/') {
        let standard = STANDARD_RESOURCES.contains(&name)
            || is_hugepages(name)
            || name.starts_with("requests.hugepages-")
            || name.starts_with("limits.hugepages-");
        if qualified && !standard {
            errs.invalid(path, name, "must be a standard resource type or fully qualified");
        }
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !is_hugepages(name) {
            errs.invalid(path, name, "must be a standard resource for containers");
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.invalid(path, name, "doesn't follow extended resource name standard");
    }
}

/// A quantity's sign and, for extended resources, integrality.
fn resource_quantity(errs: &mut Errors, path: &Path, name: &str, value: &Value) -> Option<Quantity> {
    let parsed = quantity(errs, path, value)?;
    if parsed.is_negative() {
        errs.invalid(path, quantity_text(value), NEGATIVE_MESSAGE);
    }
    if is_extended_resource(name) && !parsed.is_integer() {
        errs.invalid_go(path, quantity_text(value), "must be an integer");
    }
    Some(parsed)
}

fn resource_requirements(errs: &mut Errors, resources: &Value, claim_names: &BTreeSet<&str>, path: &Path) {
    let (limits_path, requests_path) = (path.child("limits"), path.child("requests"));
    let empty = Map::new();
    let limits = get(resources, "limits").and_then(Value::as_object).unwrap_or(&empty);
    let requests = get(resources, "requests").and_then(Value::as_object).unwrap_or(&empty);
    let (mut cpu_or_memory, mut hugepages) = (false, false);
    let mut limit_quantities = BTreeMap::new();
    for (name, value) in limits {
        let entry_path = limits_path.key(name);
        container_resource_name(errs, &entry_path, name);
        if let Some(parsed) = resource_quantity(errs, &entry_path, name, value) {
            limit_quantities.insert(name.as_str(), (parsed, quantity_text(value)));
        }
        hugepages |= is_hugepages(name);
        cpu_or_memory |= name == "cpu" || name == "memory";
    }
    for (name, value) in requests {
        let entry_path = requests_path.key(name);
        container_resource_name(errs, &entry_path, name);
        let parsed = resource_quantity(errs, &entry_path, name, value);
        match (parsed, limit_quantities.get(name.as_str())) {
            (Some(request), Some((limit, limit_text))) => {
                if request != *limit && !overcommit_allowed(name) {
                    let detail = format!("must be equal to {name} limit of {limit_text}");
                    errs.invalid(&requests_path, quantity_text(value), detail);
                } else if request > *limit {
                    let detail = format!("must be less than or equal to {name} limit of {limit_text}");
                    errs.invalid(&requests_path, quantity_text(value), detail);
                }
            }
            (_, None) if !overcommit_allowed(name) => {
                errs.required(&limits_path, "Limit must be set for non overcommitable resources");
            }
            _ => {}
        }
        hugepages |= is_hugepages(name);
        cpu_or_memory |= name == "cpu" || name == "memory";
    }
    if hugepages && !cpu_or_memory {
        errs.forbidden(path, "HugePages require cpu or memory");
    }
    let mut names = BTreeSet::new();
    for (index, claim) in list(resources, "claims").iter().enumerate() {
        let name = text(claim, "name");
        if name.is_empty() {
            errs.required(&path.child("claims").index(index), "");
            continue;
        }
        if !names.insert(name) {
            errs.duplicate(&path.child("claims").index(index), name);
        }
        if !claim_names.contains(name) {
            let known: Vec<&str> = claim_names.iter().copied().collect();
            let detail = if known.is_empty() {
                "must be one of the names in pod.spec.resourceClaims which is empty".to_string()
            } else {
                format!("must be one of the names in pod.spec.resourceClaims: {}", known.join(", "))
            };
            errs.push(ErrorType::NotFound, &path.child("claims").index(index), name.into(), detail);
        }
    }
}

fn user_or_group_id(errs: &mut Errors, path: &Path, id: Option<i64>) {
    if let Some(id) = id.filter(|id| !(0..=MAX_USER_OR_GROUP_ID).contains(id)) {
        errs.invalid(path, id, inclusive_range_error(0, MAX_USER_OR_GROUP_ID));
    }
}

/// The pod's security context; upstream keeps hostPID and shareProcessNamespace in it.
fn pod_security_context(errs: &mut Errors, spec: &Value, path: &Path) {
    let Some(context) = get(spec, "securityContext") else { return };
    user_or_group_id(errs, &path.child("fsGroup"), int(context, "fsGroup"));
    user_or_group_id(errs, &path.child("runAsUser"), int(context, "runAsUser"));
    user_or_group_id(errs, &path.child("runAsGroup"), int(context, "runAsGroup"));
    for (index, group) in list(context, "supplementalGroups").iter().enumerate() {
        user_or_group_id(errs, &path.child("supplementalGroups").index(index), group.as_i64());
    }
    if flag(spec, "shareProcessNamespace") && flag(spec, "hostPID") {
        let detail = "ShareProcessNamespace and HostPID cannot both be enabled";
        errs.invalid(&path.child("shareProcessNamespace"), "true", detail);
    }
    match opt_text(context, "fsGroupChangePolicy") {
        None | Some("OnRootMismatch" | "Always") => {}
        Some(other) => {
            errs.not_supported(&path.child("fsGroupChangePolicy"), other, &["Always", "OnRootMismatch"])
        }
    }
}

fn security_context(errs: &mut Errors, context: Option<&Value>, path: &Path) {
    let Some(context) = context else { return };
    user_or_group_id(errs, &path.child("runAsUser"), int(context, "runAsUser"));
    user_or_group_id(errs, &path.child("runAsGroup"), int(context, "runAsGroup"));
    match opt_text(context, "procMount") {
        None | Some("Default" | "Unmasked") => {}
        Some(other) => errs.not_supported(&path.child("procMount"), other, &["Default", "Unmasked"]),
    }
    if context.get("allowPrivilegeEscalation").and_then(Value::as_bool) == Some(false) {
        if flag(context, "privileged") {
            errs.invalid_go(
                path,
                context.to_string(),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            );
        }
        let capabilities = get(context, "capabilities").unwrap_or(&Value::Null);
        if strings(capabilities, "add").contains(&"CAP_SYS_ADMIN") {
            let detail =
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN";
            errs.invalid_go(path, context.to_string(), detail);
        }
    }
}

fn dns_config(errs: &mut Errors, spec: &Value, path: &Path) {
    let config = get(spec, "dnsConfig");
    if text(spec, "dnsPolicy") == "None" {
        match config {
            None => {
                errs.required(path, "must provide `dnsConfig` when `dnsPolicy` is None");
                return;
            }
            Some(config) if list(config, "nameservers").is_empty() => {
                errs.required(
                    &path.child("nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                );
                return;
            }
            Some(_) => {}
        }
    }
    let Some(config) = config else { return };
    let nameservers = strings(config, "nameservers");
    if nameservers.len() > MAX_DNS_NAMESERVERS {
        let detail = format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers");
        errs.invalid_go(&path.child("nameservers"), go_strings(Some(&nameservers)), detail);
    }
    for (index, nameserver) in nameservers.iter().enumerate() {
        valid_ip(errs, &path.child("nameservers").index(index), nameserver);
    }
    let searches = strings(config, "searches");
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        let detail = format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths");
        errs.invalid_go(&path.child("searches"), go_strings(Some(&searches)), detail);
    }
    if searches.join(" ").len() > MAX_DNS_SEARCH_LIST_CHARS {
        let detail = format!(
            "must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) in the search list"
        );
        errs.invalid_go(&path.child("searches"), go_strings(Some(&searches)), detail);
    }
    // 1.33 relaxes search domains (RelaxedDNSSearchValidation): "." and underscores are fine.
    for (index, search) in searches.iter().enumerate() {
        if *search != "." {
            let search = search.strip_suffix('.').unwrap_or(search);
            for message in is_dns1123_subdomain_with_underscore(search) {
                errs.invalid(&path.child("searches").index(index), search, message);
            }
        }
    }
    for (index, option) in list(config, "options").iter().enumerate() {
        if text(option, "name").is_empty() {
            errs.required(&path.child("options").index(index), "must not be empty");
        }
    }
}

fn topology_spread_constraints(errs: &mut Errors, constraints: &[Value], path: &Path) {
    for (index, constraint) in constraints.iter().enumerate() {
        let constraint_path = path.index(index);
        let max_skew = int(constraint, "maxSkew").unwrap_or(0);
        if max_skew <= 0 {
            errs.invalid(&constraint_path.child("maxSkew"), max_skew, "must be greater than zero");
        }
        let (key, when) = (text(constraint, "topologyKey"), text(constraint, "whenUnsatisfiable"));
        if key.is_empty() {
            errs.required(&constraint_path.child("topologyKey"), "can not be empty");
        }
        if when != "DoNotSchedule" && when != "ScheduleAnyway" {
            errs.not_supported(
                &constraint_path.child("whenUnsatisfiable"),
                when,
                &["DoNotSchedule", "ScheduleAnyway"],
            );
        }
        let repeated = constraints[index + 1..]
            .iter()
            .any(|later| text(later, "topologyKey") == key && text(later, "whenUnsatisfiable") == when);
        if repeated {
            errs.duplicate(
                &constraint_path.child("{topologyKey, whenUnsatisfiable}"),
                format!("{{{key}, {when}}}"),
            );
        }
        if let Some(min_domains) = int(constraint, "minDomains") {
            if min_domains <= 0 {
                errs.invalid(&constraint_path.child("minDomains"), min_domains, "must be greater than zero");
            }
            if when != "DoNotSchedule" {
                let detail =
                    format!("can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {when}");
                errs.invalid(&constraint_path.child("minDomains"), min_domains, detail);
            }
        }
        for policy_key in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            if let Some(policy) =
                opt_text(constraint, policy_key).filter(|policy| *policy != "Honor" && *policy != "Ignore")
            {
                errs.not_supported(&constraint_path.child(policy_key), policy, &["Honor", "Ignore"]);
            }
        }
        match get(constraint, "labelSelector") {
            Some(selector) => label_selector(errs, &constraint_path.child("labelSelector"), selector),
            None if !list(constraint, "matchLabelKeys").is_empty() => {
                errs.forbidden(
                    &constraint_path.child("matchLabelKeys"),
                    "must not be specified when labelSelector is not set",
                );
            }
            None => {}
        }
    }
}

fn tolerations(errs: &mut Errors, tolerations: &[Value], path: &Path) {
    for (index, toleration) in tolerations.iter().enumerate() {
        let toleration_path = path.index(index);
        let (key, operator) = (text(toleration, "key"), text(toleration, "operator"));
        let (value, effect) = (text(toleration, "value"), text(toleration, "effect"));
        if !key.is_empty() {
            qualified_name(errs, &toleration_path.child("key"), key);
        }
        if key.is_empty() && operator != "Exists" {
            let detail =
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"";
            errs.invalid(&toleration_path.child("operator"), operator, detail);
        }
        if get(toleration, "tolerationSeconds").is_some() && effect != "NoExecute" {
            errs.invalid(
                &toleration_path.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
        match operator {
            "Equal" | "" => {
                let messages = is_label_value(value);
                if !messages.is_empty() {
                    errs.invalid(&toleration_path.child("operator"), value, messages.join(";"));
                }
            }
            "Exists" if !value.is_empty() => {
                errs.invalid(
                    &toleration_path.child("operator"),
                    value,
                    "value must be empty when `operator` is 'Exists'",
                );
            }
            "Exists" => {}
            other => errs.not_supported(&toleration_path.child("operator"), other, &["Equal", "Exists"]),
        }
        if !effect.is_empty() {
            taint_effect(errs, &toleration_path.child("effect"), effect);
        }
    }
}

fn taint_effect(errs: &mut Errors, path: &Path, effect: &str) {
    match effect {
        "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
        "" => errs.required(path, ""),
        other => errs.not_supported(path, other, &["NoSchedule", "PreferNoSchedule", "NoExecute"]),
    }
}

// ---- Volumes ----

fn volumes<'a>(errs: &mut Errors, volumes: &'a [Value], path: &Path, pod_name: &str) -> Volumes<'a> {
    let mut by_name = Volumes::new();
    for (index, volume) in volumes.iter().enumerate() {
        let volume_path = path.index(index);
        let name = text(volume, "name");
        let errors_before = errs.len();
        let source = volume_source(errs, volume, &volume_path, name, pod_name);
        if name.is_empty() {
            errs.required(&volume_path.child("name"), "");
        } else {
            dns1123_label(errs, &volume_path.child("name"), name);
        }
        if by_name.contains_key(name) {
            errs.duplicate(&volume_path.child("name"), name);
        }
        if errs.len() == errors_before {
            by_name.insert(name, source);
        }
    }
    by_name
}

fn volume_source(errs: &mut Errors, volume: &Value, path: &Path, name: &str, pod_name: &str) -> &'static str {
    let mut first = None;
    for (key, error_child) in VOLUME_SOURCES {
        let Some(source) = get(volume, key) else { continue };
        if first.is_some() {
            errs.forbidden(&path.child(error_child), "may not specify more than 1 volume type");
            continue;
        }
        first = Some(key);
        volume_source_fields(errs, key, source, path, name, pod_name);
    }
    if first.is_none() {
        errs.required(path, "must specify a volume type");
    }
    first.unwrap_or("")
}

/// The fields each volume source requires, as upstream checks them (string or list, non-empty).
const VOLUME_SOURCE_REQUIRED_FIELDS: [(&str, &[&str]); 14] = [
    ("gitRepo", &["repository"]),
    ("secret", &["secretName"]),
    ("configMap", &["name"]),
    ("nfs", &["server", "path"]),
    ("iscsi", &["targetPortal"]),
    ("glusterfs", &["endpoints", "path"]),
    ("persistentVolumeClaim", &["claimName"]),
    ("rbd", &["monitors", "image"]),
    ("cinder", &["volumeID"]),
    ("cephfs", &["monitors"]),
    ("flexVolume", &["driver"]),
    ("csi", &["driver"]),
    ("azureFile", &["secretName", "shareName"]),
    ("awsElasticBlockStore", &["volumeID"]),
];

fn volume_source_fields(
    errs: &mut Errors,
    key: &str,
    source: &Value,
    path: &Path,
    name: &str,
    pod_name: &str,
) {
    let source_path = path.child(key);
    let required_fields = VOLUME_SOURCE_REQUIRED_FIELDS.iter().filter(|(source_key, _)| *source_key == key);
    for field in required_fields.flat_map(|(_, fields)| fields.iter()) {
        let empty = text(source, field).is_empty()
            && get(source, field).is_none_or(|value| value.as_array().is_some_and(Vec::is_empty));
        if empty {
            errs.required(&source_path.child(field), "");
        }
    }
    match key {
        "emptyDir" => {
            let limit_path = source_path.child("sizeLimit");
            if let Some(limit) = get(source, "sizeLimit")
                && quantity(errs, &limit_path, limit).is_some_and(Quantity::is_negative)
            {
                errs.forbidden(&limit_path, "SizeLimit field must be a valid resource quantity");
            }
        }
        "hostPath" => host_path_source(errs, source, &source_path),
        "gitRepo" => local_descending_path(errs, &source_path.child("directory"), text(source, "directory")),
        "gcePersistentDisk" => {
            // Upstream reports a GCE disk under `persistentDisk`.
            let disk_path = path.child("persistentDisk");
            if text(source, "pdName").is_empty() {
                errs.required(&disk_path.child("pdName"), "");
            }
            disk_partition(errs, source, &disk_path);
        }
        "awsElasticBlockStore" => disk_partition(errs, source, &source_path),
        "secret" | "configMap" => {
            file_mode(errs, &source_path.child("defaultMode"), int(source, "defaultMode"));
            for (index, item) in list(source, "items").iter().enumerate() {
                key_to_path(errs, item, &source_path.child("items").index(index));
            }
        }
        "nfs" => {
            let nfs_path = text(source, "path");
            if !nfs_path.starts_with('/') {
                errs.invalid(&source_path.child("path"), nfs_path, "must be an absolute path");
            }
        }
        "iscsi" => iscsi_source(errs, source, &source_path),
        "downwardAPI" => {
            file_mode(errs, &source_path.child("defaultMode"), int(source, "defaultMode"));
            for item in list(source, "items") {
                // Upstream reports a file's problems without the item's index.
                downward_api_file(errs, item, &source_path);
            }
        }
        "projected" => projected_sources(errs, source, &source_path),
        "ephemeral" => {
            if get(source, "volumeClaimTemplate").is_none() {
                errs.required(&source_path.child("volumeClaimTemplate"), "");
            }
            // The pod's claim for this volume is named after both; it must be a valid name.
            if !pod_name.is_empty() && !name.is_empty() {
                let claim_name = format!("{pod_name}-{name}");
                for message in is_dns1123_subdomain(&claim_name) {
                    let detail = format!("PVC name {}: {message}", go_quote(&claim_name));
                    errs.invalid(&path.child("name"), name, detail);
                }
            }
        }
        _ => {}
    }
}

fn host_path_source(errs: &mut Errors, source: &Value, path: &Path) {
    const HOST_PATH_TYPES: [&str; 8] =
        ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"];
    let host_path = text(source, "path");
    if host_path.is_empty() {
        errs.required(&path.child("path"), "");
        return;
    }
    if has_backsteps(host_path) {
        errs.invalid(&path.child("path"), host_path, "must not contain '..'");
    }
    if let Some(host_path_type) = opt_text(source, "type").filter(|kind| !HOST_PATH_TYPES.contains(kind)) {
        errs.not_supported(&path.child("type"), host_path_type, &HOST_PATH_TYPES);
    }
}

fn disk_partition(errs: &mut Errors, source: &Value, path: &Path) {
    // Upstream checks 0..=255 but says 1..=255.
    if let Some(partition) = int(source, "partition").filter(|partition| !(0..=255).contains(partition)) {
        errs.invalid(&path.child("partition"), partition, inclusive_range_error(1, 255));
    }
}

fn iscsi_source(errs: &mut Errors, source: &Value, path: &Path) {
    let iqn = text(source, "iqn");
    if iqn.is_empty() {
        errs.required(&path.child("iqn"), "");
    } else if !["iqn", "eui", "naa"].iter().any(|prefix| iqn.starts_with(prefix)) {
        errs.invalid(&path.child("iqn"), iqn, "must be valid format starting with iqn, eui, or naa");
    }
    if let Some(lun) = int(source, "lun").filter(|lun| !(0..=255).contains(lun)) {
        errs.invalid(&path.child("lun"), lun, inclusive_range_error(0, 255));
    }
}

fn file_mode(errs: &mut Errors, path: &Path, mode: Option<i64>) {
    if let Some(mode) = mode.filter(|mode| !(0..=MAX_FILE_MODE).contains(mode)) {
        errs.invalid(path, mode, FILE_MODE_MESSAGE);
    }
}

fn key_to_path(errs: &mut Errors, item: &Value, path: &Path) {
    if text(item, "key").is_empty() {
        errs.required(&path.child("key"), "");
    }
    let target = text(item, "path");
    if target.is_empty() {
        errs.required(&path.child("path"), "");
    }
    local_non_reserved_path(errs, &path.child("path"), target);
    file_mode(errs, &path.child("mode"), int(item, "mode"));
}

fn downward_api_file(errs: &mut Errors, file: &Value, path: &Path) {
    let target = text(file, "path");
    if target.is_empty() {
        errs.required(&path.child("path"), "");
    }
    local_non_reserved_path(errs, &path.child("path"), target);
    match (get(file, "fieldRef"), get(file, "resourceFieldRef")) {
        (Some(field_ref), resource_ref) => {
            object_field_selector(errs, field_ref, &VOLUME_FIELD_PATHS, &path.child("fieldRef"));
            if resource_ref.is_some() {
                errs.invalid(
                    path,
                    "resource",
                    "fieldRef and resourceFieldRef can not be specified simultaneously",
                );
            }
        }
        (None, Some(resource_ref)) => {
            resource_field_selector(errs, resource_ref, true, &path.child("resourceFieldRef"))
        }
        (None, None) => errs.required(path, "one of fieldRef and resourceFieldRef is required"),
    }
    file_mode(errs, &path.child("mode"), int(file, "mode"));
}

fn projected_sources(errs: &mut Errors, projected: &Value, path: &Path) {
    file_mode(errs, &path.child("defaultMode"), int(projected, "defaultMode"));
    let mut paths = BTreeSet::new();
    for (index, source) in list(projected, "sources").iter().enumerate() {
        let source_path = path.child("sources").index(index);
        let kinds = ["secret", "configMap", "downwardAPI", "serviceAccountToken", "clusterTrustBundle"];
        if kinds.iter().filter(|kind| get(source, kind).is_some()).count() > 1 {
            errs.forbidden(&source_path, "may not specify more than 1 volume type per source");
        }
        for kind in ["secret", "configMap"] {
            let Some(projection) = get(source, kind) else { continue };
            let projection_path = source_path.child(kind);
            if text(projection, "name").is_empty() {
                errs.required(&projection_path.child("name"), "");
            }
            for (item_index, item) in list(projection, "items").iter().enumerate() {
                key_to_path(errs, item, &projection_path.child("items").index(item_index));
                let item_path = text(item, "path");
                if !item_path.is_empty() && !paths.insert(item_path) {
                    errs.invalid(path, text(projection, "name"), "conflicting duplicate paths");
                }
            }
        }
        if let Some(downward_api) = get(source, "downwardAPI") {
            for (item_index, item) in list(downward_api, "items").iter().enumerate() {
                downward_api_file(
                    errs,
                    item,
                    &source_path.child("downwardAPI").child("items").index(item_index),
                );
                let item_path = text(item, "path");
                if !item_path.is_empty() && !paths.insert(item_path) {
                    errs.invalid(path, "", "conflicting duplicate paths");
                }
            }
        }
        if let Some(token) = get(source, "serviceAccountToken") {
            let token_path = source_path.child("serviceAccountToken");
            let expiration = int(token, "expirationSeconds").unwrap_or(0);
            if expiration < 600 {
                errs.invalid(
                    &token_path.child("expirationSeconds"),
                    expiration,
                    "may not specify a duration less than 10 minutes",
                );
            }
            if expiration > 1 << 32 {
                errs.invalid(
                    &token_path.child("expirationSeconds"),
                    expiration,
                    "may not specify a duration larger than 2^32 seconds",
                );
            }
            let target = text(token, "path");
            if target.is_empty() {
                errs.required(&token_path.child("path"), "");
            } else {
                local_non_reserved_path(errs, &token_path.child("path"), target);
                if !paths.insert(target) {
                    errs.invalid(path, target, "conflicting duplicate paths");
                }
            }
        }
    }
}

// ---- Deployments and ReplicaSets: apps validation ----

fn deployment(errs: &mut Errors, object: &Value, scope: Scope<'_>) {
    object_meta(errs, object, scope.namespaced, NameRule::Subdomain, true);
    let spec = get(object, "spec").unwrap_or(&Value::Null);
    let path = Path::root("spec");
    non_negative(errs, &path.child("replicas"), int(spec, "replicas"));
    selector_and_template(errs, spec, &path);
    deployment_strategy(errs, get(spec, "strategy").unwrap_or(&Value::Null), &path.child("strategy"));
    let min_ready_seconds = int(spec, "minReadySeconds").unwrap_or(0);
    non_negative(errs, &path.child("minReadySeconds"), Some(min_ready_seconds));
    non_negative(errs, &path.child("revisionHistoryLimit"), int(spec, "revisionHistoryLimit"));
    if let Some(deadline) = int(spec, "progressDeadlineSeconds") {
        non_negative(errs, &path.child("progressDeadlineSeconds"), Some(deadline));
        if deadline <= min_ready_seconds {
            errs.invalid(
                &path.child("progressDeadlineSeconds"),
                deadline,
                "must be greater than minReadySeconds",
            );
        }
    }
    if let Some(old) = scope.old {
        selector_unchanged(errs, spec, get(old, "spec").unwrap_or(&Value::Null), &path.child("selector"));
    }
}

fn replica_set(errs: &mut Errors, object: &Value, scope: Scope<'_>) {
    object_meta(errs, object, scope.namespaced, NameRule::Subdomain, true);
    let spec = get(object, "spec").unwrap_or(&Value::Null);
    let path = Path::root("spec");
    non_negative(errs, &path.child("replicas"), int(spec, "replicas"));
    non_negative(errs, &path.child("minReadySeconds"), int(spec, "minReadySeconds"));
    selector_and_template(errs, spec, &path);
    if let Some(old) = scope.old {
        selector_unchanged(errs, spec, get(old, "spec").unwrap_or(&Value::Null), &path.child("selector"));
    }
}

/// The selector (required, valid, not empty) and the template it must select.
fn selector_and_template(errs: &mut Errors, spec: &Value, path: &Path) {
    let selector_path = path.child("selector");
    let selector = get(spec, "selector");
    match selector {
        None => errs.required(&selector_path, ""),
        Some(selector) => {
            label_selector(errs, &selector_path, selector);
            if selector_is_empty(selector) {
                // Upstream says "deployment" for ReplicaSets too.
                errs.invalid_go(
                    &selector_path,
                    go_label_selector(selector),
                    "empty selector is invalid for deployment",
                );
            }
        }
    }
    if let Some(selector) = selector.filter(|selector| !selector_converts(selector)) {
        errs.invalid_go(&selector_path, go_label_selector(selector), "invalid label selector");
        return;
    }
    let template_path = path.child("template");
    let template = get(spec, "template").unwrap_or(&Value::Null);
    let template_meta = metadata(template);
    let template_labels = string_map(template_meta, "labels");
    // An absent selector selects nothing; an empty one everything.
    let selected = selector
        .is_some_and(|selector| selector_is_empty(selector) || selector_matches(selector, &template_labels));
    if !selected {
        let rendered = go_string_map(get(template_meta, "labels").map(|_| &template_labels));
        errs.invalid_go(
            &template_path.child("metadata").child("labels"),
            rendered,
            "`selector` does not match template `labels`",
        );
    }
    pod_template(errs, template, &template_path);
    let template_spec = get(template, "spec").unwrap_or(&Value::Null);
    let restart_policy = text(template_spec, "restartPolicy");
    if restart_policy != "Always" {
        errs.not_supported(&template_path.child("spec").child("restartPolicy"), restart_policy, &["Always"]);
    }
    if get(template_spec, "activeDeadlineSeconds").is_some() {
        let deadline_path = template_path.child("spec").child("activeDeadlineSeconds");
        errs.forbidden(&deadline_path, "activeDeadlineSeconds in ReplicaSet is not Supported");
    }
}

/// ValidatePodTemplateSpec: the template's labels and annotations, and its pod spec.
fn pod_template(errs: &mut Errors, template: &Value, path: &Path) {
    let meta = metadata(template);
    let spec = get(template, "spec").unwrap_or(&Value::Null);
    labels(errs, &path.child("labels"), &string_map(meta, "labels"));
    annotations(errs, &path.child("annotations"), &string_map(meta, "annotations"));
    pod_specific_annotations(errs, meta, spec, &path.child("annotations"));
    pod_spec(errs, spec, &path.child("spec"), PodSpecOptions { resource_is_pod: false, pod_name: "" });
    if !list(spec, "ephemeralContainers").is_empty() {
        let ephemeral_path = path.child("spec").child("ephemeralContainers");
        errs.forbidden(&ephemeral_path, "ephemeral containers not allowed in pod template");
    }
}

fn selector_unchanged(errs: &mut Errors, spec: &Value, old_spec: &Value, path: &Path) {
    let (selector, old_selector) = (get(spec, "selector"), get(old_spec, "selector"));
    if same(selector, old_selector) {
        return;
    }
    match selector {
        Some(selector) => errs.invalid_go(path, go_label_selector(selector), IMMUTABLE_MESSAGE),
        None => errs.invalid(path, "null", IMMUTABLE_MESSAGE),
    }
}

fn deployment_strategy(errs: &mut Errors, strategy: &Value, path: &Path) {
    match text(strategy, "type") {
        "Recreate" => {
            if get(strategy, "rollingUpdate").is_some() {
                errs.forbidden(
                    &path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        "RollingUpdate" => match get(strategy, "rollingUpdate") {
            None => errs.required(&path.child("rollingUpdate"), "this should be defaulted and never be nil"),
            Some(rolling_update) => {
                rolling_update_deployment(errs, rolling_update, &path.child("rollingUpdate"))
            }
        },
        other => {
            let rolling_update = if get(strategy, "rollingUpdate").is_some() {
                "(*apps.RollingUpdateDeployment){...}"
            } else {
                "(*apps.RollingUpdateDeployment)(nil)"
            };
            let rendered = format!(
                "apps.DeploymentStrategy{{Type:{}, RollingUpdate:{rolling_update}}}",
                go_quote(other)
            );
            errs.push(
                ErrorType::NotSupported,
                path,
                Bad::Go(rendered),
                "supported values: \"Recreate\", \"RollingUpdate\"",
            );
        }
    }
}

/// Go's `%#v` of an `intstr.IntOrString`, as upstream prints a bad maxSurge.
fn go_int_or_string(value: Option<&IntOrString<'_>>) -> String {
    match value {
        Some(IntOrString::Str(text)) => {
            format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}", go_quote(text))
        }
        Some(IntOrString::Int(number)) => {
            format!("intstr.IntOrString{{Type:0, IntVal:{number}, StrVal:\"\"}}")
        }
        None => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".to_string(),
    }
}

/// The number an int-or-percent stands for (a percent's digits); 0 when it is neither.
fn int_or_percent_value(value: Option<&IntOrString<'_>>) -> i64 {
    match value {
        Some(IntOrString::Int(number)) => *number,
        Some(IntOrString::Str(text)) => percent_value(text).unwrap_or(0),
        None => 0,
    }
}

fn rolling_update_deployment(errs: &mut Errors, rolling_update: &Value, path: &Path) {
    let max_unavailable = int_or_string(rolling_update, "maxUnavailable");
    let max_surge = int_or_string(rolling_update, "maxSurge");
    for (key, value) in [("maxUnavailable", &max_unavailable), ("maxSurge", &max_surge)] {
        match value {
            Some(IntOrString::Str(text)) if percent_value(text).is_none() => {
                let message = regex_error(PERCENT_MESSAGE, PERCENT_FORMAT, &["1%", "93%"]);
                errs.invalid_go(&path.child(key), go_int_or_string(value.as_ref()), message);
            }
            Some(IntOrString::Int(number)) => non_negative(errs, &path.child(key), Some(*number)),
            _ => {}
        }
    }
    if int_or_percent_value(max_unavailable.as_ref()) == 0 && int_or_percent_value(max_surge.as_ref()) == 0 {
        let rendered = go_int_or_string(max_unavailable.as_ref());
        errs.invalid_go(&path.child("maxUnavailable"), rendered, "may not be 0 when `maxSurge` is 0");
    }
    if let Some(IntOrString::Str(text)) = &max_unavailable
        && percent_value(text).is_some_and(|percent| percent > 100)
    {
        let rendered = go_int_or_string(max_unavailable.as_ref());
        errs.invalid_go(&path.child("maxUnavailable"), rendered, "must not be greater than 100%");
    }
}

// ---- HorizontalPodAutoscalers: autoscaling/v2 validation ----

const MAX_SCALING_PERIOD_SECONDS: i64 = 1800;
const MAX_STABILIZATION_WINDOW_SECONDS: i64 = 3600;
const METRIC_SOURCE_TYPES: [&str; 5] = ["ContainerResource", "External", "Object", "Pods", "Resource"];

fn horizontal_pod_autoscaler(errs: &mut Errors, object: &Value, scope: Scope<'_>) {
    object_meta(errs, object, scope.namespaced, NameRule::Subdomain, true);
    let spec = get(object, "spec").unwrap_or(&Value::Null);
    let path = Path::root("spec");
    let min_replicas = int(spec, "minReplicas");
    if let Some(min) = min_replicas.filter(|min| *min < 1) {
        errs.invalid(&path.child("minReplicas"), min, "must be greater than or equal to 1");
    }
    let max_replicas = int(spec, "maxReplicas").unwrap_or(0);
    if max_replicas < 1 {
        errs.invalid(&path.child("maxReplicas"), max_replicas, "must be greater than 0");
    }
    if min_replicas.is_some_and(|min| max_replicas < min) {
        errs.invalid(
            &path.child("maxReplicas"),
            max_replicas,
            "must be greater than or equal to `minReplicas`",
        );
    }
    object_reference(
        errs,
        get(spec, "scaleTargetRef").unwrap_or(&Value::Null),
        &path.child("scaleTargetRef"),
    );
    for (index, metric) in list(spec, "metrics").iter().enumerate() {
        metric_spec(errs, metric, &path.child("metrics").index(index));
    }
    if let Some(behavior) = get(spec, "behavior") {
        for key in ["scaleUp", "scaleDown"] {
            if let Some(rules) = get(behavior, key) {
                scaling_rules(errs, rules, &path.child("behavior").child(key));
            }
        }
    }
}

/// A CrossVersionObjectReference: kind and name, each a valid path segment.
fn object_reference(errs: &mut Errors, reference: &Value, path: &Path) {
    for key in ["kind", "name"] {
        let value = text(reference, key);
        if value.is_empty() {
            errs.required(&path.child(key), "");
        }
        for message in if value.is_empty() { Vec::new() } else { is_valid_path_segment_name(value) } {
            errs.invalid(&path.child(key), value, message);
        }
    }
}

fn metric_spec(errs: &mut Errors, metric: &Value, path: &Path) {
    let metric_type = text(metric, "type");
    if metric_type.is_empty() {
        errs.required(&path.child("type"), "must specify a metric source type");
    }
    if !METRIC_SOURCE_TYPES.contains(&metric_type) {
        errs.not_supported(&path.child("type"), metric_type, &METRIC_SOURCE_TYPES);
    }
    let mut present = Vec::new();
    for key in ["object", "external", "pods", "resource", "containerResource"] {
        let Some(source) = get(metric, key) else { continue };
        present.push(key);
        if present.len() == 1 {
            metric_source(errs, key, source, &path.child(key));
        }
    }
    let expected = match metric_type {
        "Object" => "object",
        "Pods" => "pods",
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "External" => "external",
        _ => "",
    };
    if !expected.is_empty() && get(metric, expected).is_none() {
        errs.required(&path.child(expected), "must populate information for the given metric source");
    }
    if present.len() != 1 {
        for key in present.into_iter().filter(|key| *key != expected) {
            errs.forbidden(&path.child(key), "must populate the given metric source only");
        }
    }
}

fn metric_source(errs: &mut Errors, kind: &str, source: &Value, path: &Path) {
    let target = get(source, "target").unwrap_or(&Value::Null);
    let target_path = path.child("target");
    if matches!(kind, "object" | "external" | "pods") {
        if kind == "object" {
            object_reference(
                errs,
                get(source, "describedObject").unwrap_or(&Value::Null),
                &path.child("describedObject"),
            );
        }
        metric_identifier(errs, get(source, "metric").unwrap_or(&Value::Null), &path.child("metric"));
    } else {
        if text(source, "name").is_empty() {
            errs.required(&path.child("name"), "must specify a resource name");
        }
        if kind == "containerResource" && text(source, "container").is_empty() {
            errs.required(&path.child("container"), "must specify a container");
        }
    }
    metric_target(errs, target, &target_path);
    let (value, average_value, utilization) = (
        get(target, "value").is_some(),
        get(target, "averageValue").is_some(),
        get(target, "averageUtilization").is_some(),
    );
    match kind {
        "object" if !value && !average_value => {
            errs.required(
                &target_path.child("averageValue"),
                "must set either a target value or averageValue",
            );
        }
        "external" if !value && !average_value => errs.required(
            &target_path.child("averageValue"),
            "must set either a target value for metric or a per-pod target",
        ),
        "external" if value && average_value => {
            errs.forbidden(
                &target_path.child("value"),
                "may not set both a target value for metric and a per-pod target",
            );
        }
        "pods" if !average_value => {
            errs.required(&target_path.child("averageValue"), "must specify a positive target averageValue");
        }
        "resource" | "containerResource" if !utilization && !average_value => errs.required(
            &target_path.child("averageUtilization"),
            "must set either a target raw value or a target utilization",
        ),
        "resource" | "containerResource" if utilization && average_value => errs.forbidden(
            &target_path.child("averageValue"),
            "may not set both a target raw value and a target utilization",
        ),
        _ => {}
    }
}

fn metric_identifier(errs: &mut Errors, metric: &Value, path: &Path) {
    let name = text(metric, "name");
    if name.is_empty() {
        errs.required(&path.child("name"), "must specify a metric name");
    } else {
        for message in is_valid_path_segment_name(name) {
            errs.invalid(&path.child("name"), name, message);
        }
    }
    if let Some(selector) = get(metric, "selector") {
        label_selector(errs, &path.child("selector"), selector);
    }
}

fn metric_target(errs: &mut Errors, target: &Value, path: &Path) {
    let target_type = text(target, "type");
    if target_type.is_empty() {
        errs.required(&path.child("type"), "must specify a metric target type");
    }
    if !matches!(target_type, "Utilization" | "Value" | "AverageValue") {
        errs.invalid(&path.child("type"), target_type, "must be either Utilization, Value, or AverageValue");
    }
    for key in ["value", "averageValue"] {
        if let Some(value) = get(target, key)
            && quantity(errs, &path.child(key), value).is_some_and(|parsed| parsed.nanos() <= 0)
        {
            errs.invalid_go(&path.child(key), quantity_text(value), "must be positive");
        }
    }
    if let Some(utilization) = int(target, "averageUtilization").filter(|utilization| *utilization < 1) {
        errs.invalid(&path.child("averageUtilization"), utilization, "must be greater than 0");
    }
}

fn scaling_rules(errs: &mut Errors, rules: &Value, path: &Path) {
    if let Some(window) = int(rules, "stabilizationWindowSeconds") {
        let window_path = path.child("stabilizationWindowSeconds");
        if window < 0 {
            errs.invalid(&window_path, window, "must be greater than or equal to zero");
        }
        if window > MAX_STABILIZATION_WINDOW_SECONDS {
            errs.invalid(
                &window_path,
                window,
                format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
            );
        }
    }
    if let Some(policy) =
        opt_text(rules, "selectPolicy").filter(|policy| !matches!(*policy, "Disabled" | "Max" | "Min"))
    {
        errs.not_supported(&path.child("selectPolicy"), policy, &["Disabled", "Max", "Min"]);
    }
    let policies = list(rules, "policies");
    if policies.is_empty() {
        errs.required(&path.child("policies"), "must specify at least one Policy");
    }
    for (index, policy) in policies.iter().enumerate() {
        let policy_path = path.child("policies").index(index);
        let policy_type = text(policy, "type");
        if policy_type != "Pods" && policy_type != "Percent" {
            errs.not_supported(&policy_path.child("type"), policy_type, &["Percent", "Pods"]);
        }
        let value = int(policy, "value").unwrap_or(0);
        if value <= 0 {
            errs.invalid(&policy_path.child("value"), value, "must be greater than zero");
        }
        let period = int(policy, "periodSeconds").unwrap_or(0);
        if period <= 0 {
            errs.invalid(&policy_path.child("periodSeconds"), period, "must be greater than zero");
        }
        if period > MAX_SCALING_PERIOD_SECONDS {
            let detail = format!("must be less than or equal to {MAX_SCALING_PERIOD_SECONDS}");
            errs.invalid(&policy_path.child("periodSeconds"), period, detail);
        }
    }
    if let Some(tolerance) = get(rules, "tolerance")
        && quantity(errs, &path.child("tolerance"), tolerance).is_some_and(Quantity::is_negative)
    {
        errs.invalid_go(
            &path.child("tolerance"),
            quantity_text(tolerance),
            "must be greater or equal to zero",
        );
    }
}

// ---- Services ----

/// kube-apiserver's default --service-node-port-range.
const NODE_PORT_RANGE: std::ops::RangeInclusive<i64> = 30000..=32767;
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;
const TOPOLOGY_AWARE_HINTS_ANNOTATION: &str = "service.kubernetes.io/topology-aware-hints";
const TOPOLOGY_MODE_ANNOTATION: &str = "service.kubernetes.io/topology-mode";
const LOAD_BALANCER_SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

/// The cluster IPs a Service has: `clusterIPs`, or `clusterIP` for clients that set only that
/// (upstream's strategy copies it over before validating).
fn cluster_ips(spec: &Value) -> Vec<&str> {
    let ips = strings(spec, "clusterIPs");
    let cluster_ip = text(spec, "clusterIP");
    if ips.is_empty() && !cluster_ip.is_empty() { vec![cluster_ip] } else { ips }
}

fn is_headless(ips: &[&str]) -> bool {
    ips == ["None"]
}

fn service(errs: &mut Errors, object: &Value, scope: Scope<'_>) {
    if let Some(old) = scope.old {
        service_update(errs, object, old);
    }
    object_meta(errs, object, scope.namespaced, NameRule::Dns1035Label, true);
    let annotations = string_map(metadata(object), "annotations");
    if let (Some(hints), Some(mode)) =
        (annotations.get(TOPOLOGY_AWARE_HINTS_ANNOTATION), annotations.get(TOPOLOGY_MODE_ANNOTATION))
        && hints != mode
    {
        let path = Path::root("metadata").child("annotations").key(TOPOLOGY_MODE_ANNOTATION);
        errs.invalid(
            &path,
            *mode,
            format!("must match annotations[{TOPOLOGY_AWARE_HINTS_ANNOTATION}] when both are specified"),
        );
    }
    let spec = get(object, "spec").unwrap_or(&Value::Null);
    let path = Path::root("spec");
    let service_type = text(spec, "type");
    let ips = cluster_ips(spec);
    let headless = is_headless(&ips);
    let ports = list(spec, "ports");
    if ports.is_empty() && !headless && service_type != "ExternalName" {
        errs.required(&path.child("ports"), "");
    }
    match service_type {
        "LoadBalancer" | "NodePort" if headless => {
            let detail = format!("may not be set to 'None' for {service_type} services");
            errs.invalid(&path.child("clusterIPs").index(0), "None", detail);
        }
        "ExternalName" => external_name_fields(errs, spec, &ips, &path),
        _ => {}
    }
    let mut port_names = BTreeSet::new();
    for (index, port) in ports.iter().enumerate() {
        service_port(errs, port, ports.len() > 1, &mut port_names, &path.child("ports").index(index));
    }
    if get(spec, "selector").is_some() {
        labels(errs, &path.child("selector"), &string_map(spec, "selector"));
    }
    session_affinity(errs, spec, &path);
    cluster_ips_and_families(errs, spec, &ips);
    for (index, ip) in strings(spec, "externalIPs").iter().enumerate() {
        let ip_path = path.child("externalIPs").index(index);
        if parse_ip_sloppy(ip).is_none() {
            errs.invalid(&ip_path, *ip, IP_MESSAGE);
        } else {
            non_special_ip(errs, &ip_path, ip);
        }
    }
    match service_type {
        "" => errs.required(&path.child("type"), ""),
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort" => {}
        other => errs.not_supported(
            &path.child("type"),
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ),
    }
    service_node_ports(errs, ports, service_type, &path.child("ports"));
    load_balancer_fields(errs, object, spec, service_type, &path);
    traffic_policies(errs, spec, service_type, &path);
}

/// An ExternalName service is only a DNS name: no cluster IPs, no IP families.
fn external_name_fields(errs: &mut Errors, spec: &Value, ips: &[&str], path: &Path) {
    for (present, key) in [
        (!ips.is_empty(), "clusterIPs"),
        (!list(spec, "ipFamilies").is_empty(), "ipFamilies"),
        (get(spec, "ipFamilyPolicy").is_some(), "ipFamilyPolicy"),
    ] {
        if present {
            errs.forbidden(&path.child(key), "may not be set for ExternalName services");
        }
    }
    // The name (a CNAME) may end in a dot.
    let external_name = text(spec, "externalName");
    let cname = external_name.strip_suffix('.').unwrap_or(external_name);
    if cname.is_empty() {
        errs.required(&path.child("externalName"), "");
    } else {
        dns1123_subdomain(errs, &path.child("externalName"), cname);
    }
}

fn service_port(
    errs: &mut Errors,
    port: &Value,
    require_name: bool,
    names: &mut BTreeSet<String>,
    path: &Path,
) {
    let name = text(port, "name");
    if require_name && name.is_empty() {
        errs.required(&path.child("name"), "");
    } else if !name.is_empty() {
        dns1123_label(errs, &path.child("name"), name);
        if !names.insert(name.to_string()) {
            errs.duplicate(&path.child("name"), name);
        }
    }
    let number = int(port, "port").unwrap_or(0);
    for message in is_valid_port_number(number) {
        errs.invalid(&path.child("port"), number, message);
    }
    protocol(errs, &path.child("protocol"), text(port, "protocol"));
    port_number_or_name(errs, &path.child("targetPort"), int_or_string(port, "targetPort"));
    if let Some(app_protocol) = opt_text(port, "appProtocol") {
        qualified_name(errs, &path.child("appProtocol"), app_protocol);
    }
}

fn session_affinity(errs: &mut Errors, spec: &Value, path: &Path) {
    let config_path = path.child("sessionAffinityConfig");
    match text(spec, "sessionAffinity") {
        "" => errs.required(&path.child("sessionAffinity"), ""),
        "None" => {
            if get(spec, "sessionAffinityConfig").is_some() {
                errs.forbidden(&config_path, "must not be set when session affinity is None");
            }
        }
        "ClientIP" => {
            let detail = "when session affinity type is ClientIP";
            let Some(config) = get(spec, "sessionAffinityConfig") else {
                errs.required(&config_path, detail);
                return;
            };
            let Some(client_ip) = get(config, "clientIP") else {
                errs.required(&config_path.child("clientIP"), detail);
                return;
            };
            let timeout_path = config_path.child("clientIP").child("timeoutSeconds");
            match int(client_ip, "timeoutSeconds") {
                None => errs.required(&timeout_path, detail),
                Some(timeout) if timeout <= 0 || timeout > MAX_CLIENT_IP_AFFINITY_SECONDS => {
                    let detail =
                        format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}");
                    errs.invalid(&timeout_path, timeout, detail);
                }
                Some(_) => {}
            }
        }
        other => errs.not_supported(&path.child("sessionAffinity"), other, &["ClientIP", "None"]),
    }
}

/// ValidateServiceClusterIPsRelatedFields.
fn cluster_ips_and_families(errs: &mut Errors, spec: &Value, ips: &[&str]) {
    if text(spec, "type") == "ExternalName" {
        return;
    }
    let path = Path::root("spec");
    let (ips_path, families_path) = (path.child("clusterIPs"), path.child("ipFamilies"));
    let (cluster_ip, explicit_ips) = (text(spec, "clusterIP"), strings(spec, "clusterIPs"));
    if !cluster_ip.is_empty() && explicit_ips.first().is_some_and(|first| *first != cluster_ip) {
        errs.invalid_go(&ips_path, go_strings(Some(&explicit_ips)), "first value must match `clusterIP`");
    }
    if cluster_ip.is_empty() && !explicit_ips.is_empty() {
        errs.invalid_go(
            &ips_path,
            go_strings(Some(&explicit_ips)),
            "must be empty when `clusterIP` is not specified",
        );
    }
    let families = strings(spec, "ipFamilies");
    let mut seen = BTreeSet::new();
    for (index, family) in families.iter().enumerate() {
        if *family != "IPv4" && *family != "IPv6" {
            errs.not_supported(&families_path.index(index), *family, &["IPv4", "IPv6"]);
        }
        if !seen.insert(family) {
            errs.duplicate(&families_path.index(index), *family);
        }
    }
    let policies = ["PreferDualStack", "RequireDualStack", "SingleStack"];
    if let Some(policy) = opt_text(spec, "ipFamilyPolicy").filter(|policy| !policies.contains(policy)) {
        errs.not_supported(&path.child("ipFamilyPolicy"), policy, &policies);
    }
    let mut invalid_ips = false;
    for (index, ip) in ips.iter().enumerate() {
        if index == 0 && *ip == "None" {
            if ips.len() > 1 {
                invalid_ips = true;
                errs.invalid_go(&ips_path, go_strings(Some(ips)), "'None' must be the first and only value");
            }
            continue;
        }
        if parse_ip_sloppy(ip).is_none() {
            invalid_ips = true;
            errs.invalid(&ips_path.index(index), *ip, IP_MESSAGE);
        }
    }
    if ips.len() > 2 {
        errs.invalid_go(&ips_path, go_strings(Some(ips)), "may only hold up to 2 values");
    }
    if invalid_ips {
        return;
    }
    if ips.len() > 1 {
        let v6 = ips.iter().filter(|ip| is_ipv6(ip)).count();
        if v6 == 0 || v6 == ips.len() {
            errs.invalid_go(
                &ips_path,
                go_strings(Some(ips)),
                "may specify no more than one IP for each IP family",
            );
        }
    }
    if !is_headless(ips) {
        for (index, (ip, family)) in ips.iter().zip(&families).enumerate() {
            let expected = match (*family, is_ipv6(ip)) {
                ("IPv4", true) => "IPv4",
                ("IPv6", false) => "IPv6",
                _ => continue,
            };
            let detail = format!("expected an {expected} value as indicated by `ipFamilies[{index}]`");
            errs.invalid(&ips_path.index(index), *ip, detail);
        }
    }
}

fn service_node_ports(errs: &mut Errors, ports: &[Value], service_type: &str, path: &Path) {
    let (mut node_ports, mut service_ports) = (BTreeSet::new(), BTreeSet::new());
    for (index, port) in ports.iter().enumerate() {
        let port_path = path.index(index);
        let node_port = int(port, "nodePort").unwrap_or(0);
        let protocol = text(port, "protocol");
        if node_port != 0 {
            if service_type == "ClusterIP" {
                errs.forbidden(&port_path.child("nodePort"), "may not be used when `type` is 'ClusterIP'");
            }
            if !node_ports.insert((protocol, node_port)) {
                errs.duplicate(&port_path.child("nodePort"), node_port);
            }
            // The allocator's check, which kube-apiserver runs before validation.
            if matches!(service_type, "NodePort" | "LoadBalancer") && !NODE_PORT_RANGE.contains(&node_port) {
                let detail = format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORT_RANGE.start(),
                    NODE_PORT_RANGE.end()
                );
                errs.invalid(&port_path.child("nodePort"), node_port, detail);
            }
        }
        let number = int(port, "port").unwrap_or(0);
        if !service_ports.insert((protocol, number)) {
            let rendered = format!(
                "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{number}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                go_quote(protocol)
            );
            errs.push(ErrorType::Duplicate, &port_path, Bad::Go(rendered), "");
        }
    }
}

fn load_balancer_fields(errs: &mut Errors, object: &Value, spec: &Value, service_type: &str, path: &Path) {
    let is_load_balancer = service_type == "LoadBalancer";
    let ranges = strings(spec, "loadBalancerSourceRanges");
    let annotation =
        string_map(metadata(object), "annotations").get(LOAD_BALANCER_SOURCE_RANGES_ANNOTATION).copied();
    if !ranges.is_empty() {
        let ranges_path = path.child("LoadBalancerSourceRanges");
        if !is_load_balancer {
            errs.forbidden(&ranges_path, "may only be used when `type` is 'LoadBalancer'");
        }
        for (index, range) in ranges.iter().enumerate() {
            valid_cidr(errs, &ranges_path.index(index), range.trim());
        }
    } else if let Some(value) = annotation {
        let annotation_path =
            Path::root("metadata").child("annotations").key(LOAD_BALANCER_SOURCE_RANGES_ANNOTATION);
        if !is_load_balancer {
            errs.forbidden(&annotation_path, "may only be used when `type` is 'LoadBalancer'");
        }
        let value = value.trim();
        if !value.is_empty() {
            for range in value.split(',') {
                valid_cidr(errs, &annotation_path, range.trim());
            }
        }
    }
    let allocate = get(spec, "allocateLoadBalancerNodePorts").is_some();
    if allocate && !is_load_balancer {
        errs.forbidden(
            &path.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        );
    }
    if is_load_balancer && !allocate {
        // Upstream reports this one without the `spec.` prefix.
        errs.required(&Path::root("allocateLoadBalancerNodePorts"), "");
    }
    if let Some(class) = opt_text(spec, "loadBalancerClass") {
        if is_load_balancer {
            qualified_name(errs, &path.child("loadBalancerClass"), class);
        } else {
            errs.forbidden(
                &path.child("loadBalancerClass"),
                "may only be used when `type` is 'LoadBalancer'",
            );
        }
    }
}

fn needs_health_check(spec: &Value) -> bool {
    text(spec, "type") == "LoadBalancer" && text(spec, "externalTrafficPolicy") == "Local"
}

fn traffic_policies(errs: &mut Errors, spec: &Value, service_type: &str, path: &Path) {
    let external_policy = text(spec, "externalTrafficPolicy");
    let externally_accessible = matches!(service_type, "LoadBalancer" | "NodePort")
        || (service_type == "ClusterIP" && !list(spec, "externalIPs").is_empty());
    let policy_path = path.child("externalTrafficPolicy");
    if !externally_accessible {
        if !external_policy.is_empty() {
            errs.invalid(&policy_path, external_policy, "may only be set for externally-accessible services");
        }
    } else if external_policy.is_empty() {
        errs.required(&policy_path, "");
    } else if external_policy != "Cluster" && external_policy != "Local" {
        errs.not_supported(&policy_path, external_policy, &["Cluster", "Local"]);
    }
    let health_check_port = int(spec, "healthCheckNodePort").unwrap_or(0);
    let health_path = path.child("healthCheckNodePort");
    if !needs_health_check(spec) {
        if health_check_port != 0 {
            let detail =
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'";
            errs.invalid(&health_path, health_check_port, detail);
        }
    } else if health_check_port == 0 {
        errs.required(&health_path, "");
    } else {
        for message in is_valid_port_number(health_check_port) {
            errs.invalid(&health_path, health_check_port, message);
        }
    }
    let internal_path = path.child("internalTrafficPolicy");
    match opt_text(spec, "internalTrafficPolicy") {
        None if matches!(service_type, "NodePort" | "LoadBalancer" | "ClusterIP") => {
            errs.required(&internal_path, "")
        }
        Some(policy) if policy != "Cluster" && policy != "Local" => {
            errs.not_supported(&internal_path, policy, &["Cluster", "Local"])
        }
        _ => {}
    }
    if let Some(distribution) =
        opt_text(spec, "trafficDistribution").filter(|distribution| *distribution != "PreferClose")
    {
        errs.not_supported(&path.child("trafficDistribution"), distribution, &["PreferClose"]);
    }
}

/// ValidateServiceUpdate's own checks: cluster IPs and families may be added or released, not
/// changed; the load balancer class and health check port stay.
fn service_update(errs: &mut Errors, service: &Value, old: &Value) {
    let (spec, old_spec) =
        (get(service, "spec").unwrap_or(&Value::Null), get(old, "spec").unwrap_or(&Value::Null));
    let path = Path::root("spec");
    if text(spec, "type") != "ExternalName" && text(old_spec, "type") != "ExternalName" {
        let (ips, old_ips) = (cluster_ips(spec), cluster_ips(old_spec));
        cluster_ips_update(errs, spec, &ips, &old_ips);
        ip_families_update(errs, spec, old_spec, &ips, &old_ips);
    }
    let both_load_balancers =
        text(spec, "type") == "LoadBalancer" && text(old_spec, "type") == "LoadBalancer";
    let class = opt_text(spec, "loadBalancerClass");
    if both_load_balancers && class != opt_text(old_spec, "loadBalancerClass") {
        errs.invalid(&path.child("loadBalancerClass"), class.unwrap_or("null"), "may not change once set");
    }
    if needs_health_check(spec)
        && needs_health_check(old_spec)
        && int(spec, "healthCheckNodePort") != int(old_spec, "healthCheckNodePort")
    {
        errs.forbidden(&path.child("healthCheckNodePort"), IMMUTABLE_MESSAGE);
    }
}

/// Upstream's validateUpgradeDowngradeClusterIPs: a secondary IP may come or go (going needs
/// SingleStack), the primary stays.
fn cluster_ips_update(errs: &mut Errors, spec: &Value, ips: &[&str], old_ips: &[&str]) {
    if is_headless(ips) && is_headless(old_ips) {
        return;
    }
    let ips_path = Path::root("spec").child("clusterIPs");
    let rendered_ips = go_strings((!ips.is_empty()).then_some(ips));
    match old_ips.len().cmp(&ips.len()) {
        std::cmp::Ordering::Equal => {
            for (index, (ip, old_ip)) in ips.iter().zip(old_ips).enumerate() {
                if ip != old_ip {
                    errs.invalid_go(&ips_path.index(index), rendered_ips.clone(), "may not change once set");
                }
            }
        }
        std::cmp::Ordering::Greater => {
            if ips.is_empty() {
                errs.invalid_go(&ips_path.index(0), rendered_ips, "primary clusterIP can not be unset");
            } else if ips[0] != old_ips[0] {
                errs.invalid_go(&ips_path.index(0), rendered_ips, "may not change once set");
            }
            if ips.len() == 1 && text(spec, "ipFamilyPolicy") != "SingleStack" {
                let detail = "must be set to 'SingleStack' when releasing the secondary clusterIP";
                let policy = opt_text(spec, "ipFamilyPolicy").unwrap_or("null");
                errs.invalid(&Path::root("spec").child("ipFamilyPolicy"), policy, detail);
            }
        }
        std::cmp::Ordering::Less => {
            if !old_ips.is_empty() && ips[0] != old_ips[0] {
                errs.invalid_go(&ips_path.index(0), rendered_ips, "may not change once set");
            }
        }
    }
}

/// Upstream's validateUpgradeDowngradeIPFamilies, quirks included (it prints the cluster IPs
/// for some family changes, and tests them for a released primary family).
fn ip_families_update(errs: &mut Errors, spec: &Value, old_spec: &Value, ips: &[&str], old_ips: &[&str]) {
    let (headless, old_headless) = (is_headless(ips), is_headless(old_ips));
    if headless != old_headless || headless {
        return;
    }
    let families_path = Path::root("spec").child("ipFamilies").index(0);
    let (families, old_families) = (strings(spec, "ipFamilies"), strings(old_spec, "ipFamilies"));
    let rendered_families = go_strings((!families.is_empty()).then_some(families.as_slice()));
    let rendered_ips = go_strings((!ips.is_empty()).then_some(ips));
    match old_families.len().cmp(&families.len()) {
        std::cmp::Ordering::Equal => {
            if families != old_families {
                errs.invalid_go(&families_path, rendered_families, "may not change once set");
            }
        }
        std::cmp::Ordering::Greater => {
            if ips.is_empty() {
                errs.invalid_go(&families_path, rendered_families, "primary ipFamily can not be unset");
            }
            if families.first().is_some_and(|first| Some(first) != old_families.first()) {
                errs.invalid_go(&families_path, rendered_ips, "may not change once set");
            }
            if families.len() == 1 && text(spec, "ipFamilyPolicy") != "SingleStack" {
                let detail = "must be set to 'SingleStack' when releasing the secondary ipFamily";
                let policy = opt_text(spec, "ipFamilyPolicy").unwrap_or("null");
                errs.invalid(&Path::root("spec").child("ipFamilyPolicy"), policy, detail);
            }
        }
        std::cmp::Ordering::Less => {
            if !old_families.is_empty() && families.first() != old_families.first() {
                errs.invalid_go(&families_path, rendered_ips, "may not change once set");
            }
        }
    }
}

// ---- Endpoints and EndpointSlices ----

fn endpoints(errs: &mut Errors, object: &Value, scope: Scope<'_>) {
    object_meta(errs, object, scope.namespaced, NameRule::Subdomain, true);
    for (index, subset) in list(object, "subsets").iter().enumerate() {
        let subset_path = Path::root("subsets").index(index);
        let (addresses, not_ready) = (list(subset, "addresses"), list(subset, "notReadyAddresses"));
        if addresses.is_empty() && not_ready.is_empty() {
            errs.required(&subset_path, "must specify `addresses` or `notReadyAddresses`");
        }
        for (key, addresses) in [("addresses", addresses), ("notReadyAddresses", not_ready)] {
            for (address_index, address) in addresses.iter().enumerate() {
                endpoint_address(errs, address, &subset_path.child(key).index(address_index));
            }
        }
        let ports = list(subset, "ports");
        for (port_index, port) in ports.iter().enumerate() {
            let port_path = subset_path.child("ports").index(port_index);
            let name = text(port, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.required(&port_path.child("name"), "");
            } else if !name.is_empty() {
                dns1123_label(errs, &port_path.child("name"), name);
            }
            let number = int(port, "port").unwrap_or(0);
            for message in is_valid_port_number(number) {
                errs.invalid(&port_path.child("port"), number, message);
            }
            protocol(errs, &port_path.child("protocol"), text(port, "protocol"));
            if let Some(app_protocol) = opt_text(port, "appProtocol") {
                qualified_name(errs, &port_path.child("appProtocol"), app_protocol);
            }
        }
    }
}

fn endpoint_address(errs: &mut Errors, address: &Value, path: &Path) {
    let ip = text(address, "ip");
    valid_ip(errs, &path.child("ip"), ip);
    let hostname = text(address, "hostname");
    if !hostname.is_empty() {
        dns1123_label(errs, &path.child("hostname"), hostname);
    }
    if let Some(node_name) = opt_text(address, "nodeName") {
        dns1123_subdomain(errs, &path.child("nodeName"), node_name);
    }
    endpoint_ip(errs, &path.child("ip"), ip);
}

const MAX_SLICE_ENDPOINTS: usize = 1000;
const MAX_SLICE_ADDRESSES: usize = 100;
const MAX_SLICE_PORTS: usize = 100;

fn endpoint_slice(errs: &mut Errors, object: &Value, scope: Scope<'_>) {
    object_meta(errs, object, scope.namespaced, NameRule::Subdomain, true);
    let address_type = text(object, "addressType");
    let type_path = Path::root("addressType");
    // The deprecated "IP" type is still accepted on update.
    let allowed: &[&str] =
        if scope.old.is_some() { &["FQDN", "IP", "IPv4", "IPv6"] } else { &["FQDN", "IPv4", "IPv6"] };
    if address_type.is_empty() {
        errs.required(&type_path, "");
    } else if !allowed.contains(&address_type) {
        errs.not_supported(&type_path, address_type, allowed);
    }
    let endpoints_path = Path::root("endpoints");
    let endpoints = list(object, "endpoints");
    if endpoints.len() > MAX_SLICE_ENDPOINTS {
        errs.too_many(&endpoints_path, endpoints.len(), MAX_SLICE_ENDPOINTS);
    } else {
        for (index, endpoint) in endpoints.iter().enumerate() {
            slice_endpoint(errs, endpoint, address_type, &endpoints_path.index(index));
        }
    }
    let ports_path = Path::root("ports");
    let ports = list(object, "ports");
    if ports.len() > MAX_SLICE_PORTS {
        errs.too_many(&ports_path, ports.len(), MAX_SLICE_PORTS);
    } else {
        let mut names = BTreeSet::new();
        for (index, port) in ports.iter().enumerate() {
            let port_path = ports_path.index(index);
            let name = text(port, "name");
            if !name.is_empty() {
                dns1123_label(errs, &port_path.child("name"), name);
            }
            if !names.insert(name) {
                errs.duplicate(&port_path.child("name"), name);
            }
            match opt_text(port, "protocol") {
                None => errs.required(&port_path.child("protocol"), ""),
                Some("TCP" | "UDP" | "SCTP") => {}
                Some(other) => {
                    errs.not_supported(&port_path.child("protocol"), other, &["SCTP", "TCP", "UDP"])
                }
            }
            if let Some(app_protocol) = opt_text(port, "appProtocol") {
                qualified_name(errs, &port_path.child("appProtocol"), app_protocol);
            }
        }
    }
    if let Some(old) = scope.old {
        immutable_text(errs, &type_path, address_type, text(old, "addressType"));
    }
}

fn slice_endpoint(errs: &mut Errors, endpoint: &Value, address_type: &str, path: &Path) {
    let addresses_path = path.child("addresses");
    let addresses = strings(endpoint, "addresses");
    if addresses.is_empty() {
        errs.required(&addresses_path, "must contain at least 1 address");
    } else if addresses.len() > MAX_SLICE_ADDRESSES {
        errs.too_many(&addresses_path, addresses.len(), MAX_SLICE_ADDRESSES);
    }
    for (index, address) in addresses.iter().enumerate() {
        let address_path = addresses_path.index(index);
        let parsed = parse_ip_sloppy(address).map(canonical_ip);
        match address_type {
            "IP" => valid_ip(errs, &address_path, address),
            "IPv4" | "IPv6" => {
                let want_v6 = address_type == "IPv6";
                if parsed.is_none_or(|ip| ip.is_ipv6() != want_v6) {
                    errs.invalid(&address_path, *address, format!("must be a valid {address_type} address"));
                }
                endpoint_ip(errs, &address_path, address);
            }
            "FQDN" => fully_qualified_domain_name(errs, &address_path, address),
            _ => {}
        }
    }
    if let Some(hostname) = opt_text(endpoint, "hostname") {
        dns1123_label(errs, &path.child("hostname"), hostname);
    }
    if let Some(node_name) = opt_text(endpoint, "nodeName") {
        dns1123_subdomain(errs, &path.child("nodeName"), node_name);
    }
}

fn fully_qualified_domain_name(errs: &mut Errors, path: &Path, name: &str) {
    if name.is_empty() {
        errs.required(path, "");
        return;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let messages = is_dns1123_subdomain(name);
    if !messages.is_empty() {
        errs.invalid(path, name, messages.join(","));
        return;
    }
    if name.split('.').count() < 2 {
        errs.invalid(path, name, "should be a domain with at least two segments separated by dots");
        return;
    }
    if let Some((label, messages)) = name
        .split('.')
        .map(|label| (label, is_dns1123_label(label)))
        .find(|(_, messages)| !messages.is_empty())
    {
        errs.invalid(path, label, messages.join(","));
    }
}

// ---- ConfigMaps, Secrets, Namespaces, Nodes, Events, Leases ----

/// Upstream's MaxSecretSize, which also bounds a ConfigMap.
const MAX_DATA_SIZE_BYTES: usize = 1024 * 1024;
const IMMUTABLE_WHEN_SET_MESSAGE: &str = "field is immutable when `immutable` is set";

/// The decoded values of a map of base64 strings (a Secret's data, a ConfigMap's binaryData).
fn byte_map(object: &Value, key: &str) -> BTreeMap<String, Vec<u8>> {
    let decoded: Option<BTreeMap<String, k8s_openapi::ByteString>> =
        get(object, key).and_then(|map| serde::Deserialize::deserialize(map).ok());
    decoded.unwrap_or_default().into_iter().map(|(key, bytes)| (key, bytes.0)).collect()
}

/// What `immutable: true` on the stored object freezes.
fn immutable_data(errs: &mut Errors, object: &Value, old: &Value, keys: &[&str]) {
    if !flag(old, "immutable") {
        return;
    }
    if object.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.forbidden(&Path::root("immutable"), IMMUTABLE_WHEN_SET_MESSAGE);
    }
    for key in keys {
        if !same(object.get(*key), old.get(*key)) {
            errs.forbidden(&Path::root(key), IMMUTABLE_WHEN_SET_MESSAGE);
        }
    }
}

fn config_map(errs: &mut Errors, object: &Value, scope: Scope<'_>) {
    if let Some(old) = scope.old {
        immutable_data(errs, object, old, &["data", "binaryData"]);
    }
    object_meta(errs, object, scope.namespaced, NameRule::Subdomain, true);
    let data = string_map(object, "data");
    let binary_data = byte_map(object, "binaryData");
    let mut total_bytes = 0;
    for (key, value) in &data {
        let path = Path::root("data").key(key);
        for message in is_config_map_key(key) {
            errs.invalid(&path, *key, message);
        }
        if binary_data.contains_key(*key) {
            errs.invalid(&path, *key, "duplicate of key present in binaryData");
        }
        total_bytes += value.len();
    }
    for (key, value) in &binary_data {
        for message in is_config_map_key(key) {
            errs.invalid(&Path::root("binaryData").key(key), key.as_str(), message);
        }
        total_bytes += value.len();
    }
    if total_bytes > MAX_DATA_SIZE_BYTES {
        // Upstream reports the whole object, whose path prints as "[]".
        errs.too_long(&Path::root("[]"), MAX_DATA_SIZE_BYTES);
    }
}

fn secret(errs: &mut Errors, object: &Value, scope: Scope<'_>) {
    if let Some(old) = scope.old {
        immutable_text(errs, &Path::root("type"), text(object, "type"), text(old, "type"));
        immutable_data(errs, object, old, &["data"]);
    }
    object_meta(errs, object, scope.namespaced, NameRule::Subdomain, true);
    let data_path = Path::root("data");
    let data = byte_map(object, "data");
    for key in data.keys() {
        for message in is_config_map_key(key) {
            errs.invalid(&data_path.key(key), key.as_str(), message);
        }
    }
    if data.values().map(Vec::len).sum::<usize>() > MAX_DATA_SIZE_BYTES {
        errs.too_long(&data_path, MAX_DATA_SIZE_BYTES);
    }
    let well_formed_json = |errs: &mut Errors, key: &str| match data.get(key) {
        None => errs.required(&data_path.key(key), ""),
        Some(bytes) => {
            if let Err(error) = serde_json::from_slice::<Map<String, Value>>(bytes) {
                errs.invalid(&data_path.key(key), "<secret contents redacted>", error.to_string());
            }
        }
    };
    match text(object, "type") {
        "kubernetes.io/service-account-token" => {
            let annotation = "kubernetes.io/service-account.name";
            if string_map(metadata(object), "annotations").get(annotation).is_none_or(|name| name.is_empty())
            {
                errs.required(&Path::root("metadata").child("annotations").key(annotation), "");
            }
        }
        "kubernetes.io/dockercfg" => well_formed_json(errs, ".dockercfg"),
        "kubernetes.io/dockerconfigjson" => well_formed_json(errs, ".dockerconfigjson"),
        // A username or password may be empty, but one of them must be there.
        "kubernetes.io/basic-auth" if !data.contains_key("username") && !data.contains_key("password") => {
            errs.required(&data_path.key("username"), "");
            errs.required(&data_path.key("password"), "");
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(Vec::is_empty) => {
            errs.required(&data_path.key("ssh-privatekey"), "");
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !data.contains_key(key) {
                    errs.required(&data_path.key(key), "");
                }
            }
        }
        _ => {}
    }
}

fn namespace(errs: &mut Errors, object: &Value, scope: Scope<'_>) {
    object_meta(errs, object, scope.namespaced, NameRule::Label, true);
    let spec = get(object, "spec").unwrap_or(&Value::Null);
    let path = Path::root("spec").child("finalizers");
    for finalizer in strings(spec, "finalizers") {
        qualified_name(errs, &path, finalizer);
        kube_finalizer_name(errs, &path, finalizer);
    }
}

fn node(errs: &mut Errors, object: &Value, scope: Scope<'_>) {
    object_meta(errs, object, scope.namespaced, NameRule::Subdomain, true);
    let spec = get(object, "spec").unwrap_or(&Value::Null);
    let status = get(object, "status").unwrap_or(&Value::Null);
    // Upstream reports taints under metadata.
    let taints_path = Path::root("metadata").child("taints");
    let mut unique = BTreeSet::new();
    for (index, taint) in list(spec, "taints").iter().enumerate() {
        let taint_path = taints_path.index(index);
        let (key, value, effect) = (text(taint, "key"), text(taint, "value"), text(taint, "effect"));
        qualified_name(errs, &taint_path.child("key"), key);
        let messages = is_label_value(value);
        if !messages.is_empty() {
            errs.invalid(&taint_path.child("value"), value, messages.join(";"));
        }
        taint_effect(errs, &taint_path.child("effect"), effect);
        if !unique.insert((effect, key)) {
            let rendered = format!(
                "core.Taint{{Key:{}, Value:{}, Effect:{}, TimeAdded:<nil>}}",
                go_quote(key),
                go_quote(value),
                go_quote(effect)
            );
            errs.push(
                ErrorType::Duplicate,
                &taint_path,
                Bad::Go(rendered),
                "taints must be unique by key and effect pair",
            );
        }
    }
    for key in ["capacity", "allocatable"] {
        let Some(resources) = get(status, key).and_then(Value::as_object) else { continue };
        for (name, value) in resources {
            resource_quantity(errs, &Path::root("status").child(key).child(name), name, value);
        }
    }
    let cidrs = strings(spec, "podCIDRs");
    let cidrs_path = Path::root("spec").child("podCIDRs");
    for (index, cidr) in cidrs.iter().enumerate() {
        valid_cidr(errs, &cidrs_path.index(index), cidr);
    }
    if cidrs.len() > 1 {
        let v6 = cidrs.iter().filter(|cidr| cidr.split('/').next().is_some_and(is_ipv6)).count();
        if cidrs.len() > 2 || v6 == 0 || v6 == cidrs.len() {
            errs.invalid_go(
                &cidrs_path,
                go_strings(Some(&cidrs)),
                "may specify no more than one CIDR for each IP family",
            );
        }
        let mut seen = BTreeSet::new();
        for (index, cidr) in cidrs.iter().enumerate() {
            if !seen.insert(cidr) {
                errs.duplicate(&cidrs_path.index(index), *cidr);
            }
        }
    }
    if let Some(old) = scope.old {
        node_update(errs, object, old);
    }
}

fn node_update(errs: &mut Errors, node: &Value, old: &Value) {
    let (spec, old_spec) =
        (get(node, "spec").unwrap_or(&Value::Null), get(old, "spec").unwrap_or(&Value::Null));
    let mut addresses = BTreeSet::new();
    let status = get(node, "status").unwrap_or(&Value::Null);
    for (index, address) in list(status, "addresses").iter().enumerate() {
        let (kind, value) = (text(address, "type"), text(address, "address"));
        if !addresses.insert((kind, value)) {
            let rendered =
                format!("core.NodeAddress{{Type:{}, Address:{}}}", go_quote(kind), go_quote(value));
            errs.push(
                ErrorType::Duplicate,
                &Path::root("status").child("addresses").index(index),
                Bad::Go(rendered),
                "",
            );
        }
    }
    let spec_path = Path::root("spec");
    let (cidrs, old_cidrs) = (strings(spec, "podCIDRs"), strings(old_spec, "podCIDRs"));
    if !old_cidrs.is_empty() {
        let detail = "node updates may not change podCIDR except from \"\" to valid";
        if cidrs != old_cidrs {
            errs.forbidden(&spec_path.child("podCIDRs"), detail);
        }
    }
    let old_provider = text(old_spec, "providerID");
    if !old_provider.is_empty() && old_provider != text(spec, "providerID") {
        errs.forbidden(
            &spec_path.child("providerID"),
            "node updates may not change providerID except from \"\" to valid",
        );
    }
    if text(spec, "externalID") != text(old_spec, "externalID") {
        errs.forbidden(&spec_path.child("externalID"), "may not be updated");
    }
}

const EVENT_FIELD_MAX_LENGTH: usize = 128;
const EVENT_NOTE_MAX_LENGTH: usize = 1024;

/// core/v1 Events get only upstream's legacy checks; kube-apiserver's generic ObjectMeta check
/// (names as path segments) follows when they pass.
fn event(errs: &mut Errors, object: &Value, scope: Scope<'_>) {
    let errors_before = errs.len();
    let namespace = text(metadata(object), "namespace");
    let involved = get(object, "involvedObject").unwrap_or(&Value::Null);
    let involved_namespace = text(involved, "namespace");
    let involved_path = Path::root("involvedObject").child("namespace");
    let mismatch = "does not match event.namespace";
    if get(object, "eventTime").is_none() {
        let agrees = if involved_namespace.is_empty() {
            namespace.is_empty() || namespace == "default"
        } else {
            namespace == involved_namespace
        };
        if !agrees {
            errs.invalid(&involved_path, involved_namespace, mismatch);
        }
    } else {
        if involved_namespace.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.invalid(&involved_path, involved_namespace, mismatch);
        }
        let controller_path = Path::root("reportingController");
        let controller = text(object, "reportingComponent");
        if controller.is_empty() {
            errs.required(&controller_path, "");
        }
        qualified_name(errs, &controller_path, controller);
        for (key, limit) in [
            ("reportingInstance", EVENT_FIELD_MAX_LENGTH),
            ("action", EVENT_FIELD_MAX_LENGTH),
            ("reason", EVENT_FIELD_MAX_LENGTH),
        ] {
            let value = text(object, key);
            if value.is_empty() {
                errs.required(&Path::root(key), "");
            }
            if value.len() > limit {
                errs.invalid(&Path::root(key), "", format!("can have at most {limit} characters"));
            }
        }
        if text(object, "message").len() > EVENT_NOTE_MAX_LENGTH {
            errs.invalid(
                &Path::root("message"),
                "",
                format!("can have at most {EVENT_NOTE_MAX_LENGTH} characters"),
            );
        }
    }
    for message in is_dns1123_subdomain(namespace) {
        errs.invalid(&Path::root("namespace"), namespace, message);
    }
    if errs.len() == errors_before {
        object_meta(errs, object, scope.namespaced, NameRule::PathSegment, false);
    }
}

fn lease(errs: &mut Errors, object: &Value, scope: Scope<'_>) {
    object_meta(errs, object, scope.namespaced, NameRule::Subdomain, false);
    let spec = get(object, "spec").unwrap_or(&Value::Null);
    let path = Path::root("spec");
    if let Some(duration) = int(spec, "leaseDurationSeconds").filter(|duration| *duration <= 0) {
        errs.invalid(&path.child("leaseDurationSeconds"), duration, "must be greater than 0");
    }
    if let Some(transitions) = int(spec, "leaseTransitions").filter(|transitions| *transitions < 0) {
        errs.invalid(&path.child("leaseTransitions"), transitions, NEGATIVE_MESSAGE);
    }
    let strategy = opt_text(spec, "strategy");
    if let Some(strategy) = strategy {
        // Upstream nests the path once more than the field.
        let strategy_path = path.child("strategy").child("strategy");
        if !strategy.contains('/') {
            if strategy != "OldestEmulationVersion" {
                errs.not_supported(&strategy_path, strategy, &["OldestEmulationVersion"]);
            }
        } else {
            qualified_name(errs, &strategy_path, strategy);
        }
    }
    if opt_text(spec, "preferredHolder").is_some_and(|holder| !holder.is_empty())
        && strategy.is_none_or(str::is_empty)
    {
        errs.forbidden(&path.child("preferredHolder"), "may only be specified if `strategy` is defined");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults;
    use serde_json::json;

    const LABEL_REGEX_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const SUBDOMAIN_REGEX_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

    /// Defaults `object` (and `old`) as kube-apiserver would, validates, and compares the causes,
    /// each rendered as "Reason field: message" (without the "FieldValue" prefix).
    fn check(kind: &str, object: Value, old: Option<Value>, namespaced: bool, expected: &[&str]) {
        let mut object = object;
        defaults::apply(kind, &mut object);
        let old = old.map(|mut old| {
            defaults::apply(kind, &mut old);
            old
        });
        let causes = validate(kind, &object, old.as_ref(), namespaced);
        let rendered: Vec<String> = causes
            .iter()
            .map(|cause| {
                let reason = cause.reason.as_deref().unwrap_or("").trim_start_matches("FieldValue");
                format!(
                    "{reason} {}: {}",
                    cause.field.as_deref().unwrap_or(""),
                    cause.message.as_deref().unwrap_or("")
                )
            })
            .collect();
        assert_eq!(rendered, expected, "{kind}: {}", serde_json::to_string_pretty(&object).unwrap());
    }

    fn pod_with(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn container(name: &str) -> Value {
        json!({"name": name, "image": "nginx:1.25"})
    }

    fn deployment_with(spec_patch: Value) -> Value {
        let mut deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container("web")]}},
            },
        });
        merge(&mut deployment["spec"], spec_patch);
        deployment
    }

    fn service_with(spec_patch: Value) -> Value {
        let mut service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        });
        merge(&mut service["spec"], spec_patch);
        service
    }

    /// A JSON merge patch, enough for fixtures.
    fn merge(target: &mut Value, patch: Value) {
        match (target, patch) {
            (Value::Object(target), Value::Object(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        target.remove(&key);
                    } else {
                        merge(target.entry(key).or_insert(Value::Null), value);
                    }
                }
            }
            (target, patch) => *target = patch,
        }
    }

    #[test]
    fn valid_objects_of_every_kind_pass() {
        // A minimal, correct object of each kind, defaulted, has no causes on create nor on an
        // unchanged update.
        let objects = [
            ("Namespace", json!({"metadata": {"name": "team-a"}}), false),
            (
                "Node",
                json!({"metadata": {"name": "node-1"}, "status": {"capacity": {"cpu": "2", "memory": "4Gi"}}}),
                false,
            ),
            ("Pod", pod_with(json!({"containers": [container("web")]})), true),
            ("Service", service_with(json!({})), true),
            (
                "Endpoints",
                json!({"metadata": {"name": "web", "namespace": "default"},
                "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
                true,
            ),
            (
                "ConfigMap",
                json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"app.yaml": "x"}}),
                true,
            ),
            (
                "Secret",
                json!({"metadata": {"name": "s", "namespace": "default"}, "stringData": {"password": "x"}}),
                true,
            ),
            ("ServiceAccount", json!({"metadata": {"name": "default", "namespace": "default"}}), true),
            (
                "Event",
                json!({"metadata": {"name": "web.17a", "namespace": "default"},
                "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "Started"}),
                true,
            ),
            ("Deployment", deployment_with(json!({})), true),
            (
                "ReplicaSet",
                json!({"metadata": {"name": "web-1", "namespace": "default"}, "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container("web")]}}}}),
                true,
            ),
            (
                "Lease",
                json!({"metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
                "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}),
                true,
            ),
            (
                "EndpointSlice",
                json!({"metadata": {"name": "web-abc", "namespace": "default"}, "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]}),
                true,
            ),
            (
                "HorizontalPodAutoscaler",
                json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3}}),
                true,
            ),
        ];
        for (kind, object, namespaced) in objects {
            check(kind, object.clone(), None, namespaced, &[]);
            let mut stored = object.clone();
            defaults::apply(kind, &mut stored);
            stored["metadata"]["resourceVersion"] = json!("5");
            check(kind, object, Some(stored), namespaced, &[]);
        }
    }

    #[test]
    fn object_meta_problems() {
        // Names per kind, namespace scope, labels, annotations, finalizers and owners.
        check(
            "ConfigMap",
            json!({"metadata": {"name": "Web", "labels": {"-bad": "x y"}, "finalizers": ["foo", "example.com/ok"]}}),
            None,
            true,
            &[
                &format!("Invalid metadata.name: Invalid value: \"Web\": {SUBDOMAIN_REGEX_MESSAGE}"),
                "Required metadata.namespace: Required value",
                "Invalid metadata.labels: Invalid value: \"-bad\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                "Invalid metadata.labels: Invalid value: \"x y\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                "Invalid metadata.finalizers[0]: Invalid value: \"foo\": name is neither a standard finalizer name nor is it fully qualified",
            ],
        );
        check(
            "Namespace",
            json!({"metadata": {"name": "team.a"}}),
            None,
            false,
            &["Invalid metadata.name: Invalid value: \"team.a\": must not contain dots"],
        );
        check(
            "Node",
            json!({"metadata": {"name": "n", "namespace": "default"}}),
            None,
            false,
            &["Forbidden metadata.namespace: Forbidden: not allowed on this type"],
        );
        check(
            "Service",
            renamed(service_with(json!({})), "1web"),
            None,
            true,
            &[
                "Invalid metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            ],
        );
        check(
            "ServiceAccount",
            json!({"metadata": {"generateName": "Bad-", "namespace": "ns"}}),
            None,
            true,
            &[
                &format!("Invalid metadata.generateName: Invalid value: \"Bad-\": {SUBDOMAIN_REGEX_MESSAGE}"),
                "Required metadata.name: Required value: name or generateName is required",
            ],
        );
        let big = "x".repeat(256 * 1024);
        check(
            "ServiceAccount",
            json!({"metadata": {"name": "a", "namespace": "ns", "annotations": {"k": big}}}),
            None,
            true,
            &["TooLong metadata.annotations: Too long: must have at most 262144 bytes"],
        );
        check(
            "ServiceAccount",
            json!({"metadata": {"name": "a", "namespace": "ns", "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p"}]}}),
            None,
            true,
            &["Invalid metadata.ownerReferences.uid: Invalid value: \"\": must not be empty"],
        );
    }

    /// The same object under another name.
    fn renamed(mut object: Value, name: &str) -> Value {
        object["metadata"]["name"] = json!(name);
        object
    }

    #[test]
    fn pod_container_problems() {
        // The container checks upstream users meet most: names, images, ports, duplicates.
        check(
            "Pod",
            pod_with(json!({"containers": [
                {"name": "Web", "image": ""},
                {"name": "db", "image": "postgres", "ports": [{"containerPort": 70000, "protocol": "HTTP"}, {"name": "x--y", "containerPort": 80}]},
                {"name": "db", "image": " padded "},
            ]})),
            None,
            true,
            &[
                &format!("Invalid spec.containers[0].name: Invalid value: \"Web\": {LABEL_REGEX_MESSAGE}"),
                "Required spec.containers[0].image: Required value",
                "Invalid spec.containers[1].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "NotSupported spec.containers[1].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "Invalid spec.containers[1].ports[1].name: Invalid value: \"x--y\": must not contain consecutive hyphens",
                "Duplicate spec.containers[2].name: Duplicate value: \"db\"",
                "Invalid spec.containers[2].image: Invalid value: \" padded \": must not have leading or trailing whitespace",
            ],
        );
        check(
            "Pod",
            pod_with(json!({"containers": []})),
            None,
            true,
            &["Required spec.containers: Required value"],
        );
    }

    #[test]
    fn pod_probe_env_resource_and_policy_problems() {
        // Probe handlers, env names and sources, requests over limits, restart policy.
        check(
            "Pod",
            pod_with(json!({
                "restartPolicy": "Sometimes",
                "containers": [{
                    "name": "web", "image": "nginx",
                    "livenessProbe": {"exec": {"command": ["true"]}, "httpGet": {"port": 80}, "successThreshold": 2},
                    "readinessProbe": {"periodSeconds": -1},
                    "env": [{"name": "A=B"}, {"name": "C", "valueFrom": {}}],
                    "resources": {"limits": {"cpu": "100m"}, "requests": {"cpu": "200m", "foo": "1"}},
                }],
            })),
            None,
            true,
            &[
                "Invalid spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                "Invalid spec.containers[0].env[1].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                "Invalid spec.containers[0].resources.requests: Invalid value: \"200m\": must be less than or equal to cpu limit of 100m",
                "Invalid spec.containers[0].resources.requests[foo]: Invalid value: \"foo\": must be a standard resource type or fully qualified",
                "Invalid spec.containers[0].resources.requests[foo]: Invalid value: \"foo\": must be a standard resource for containers",
                "Forbidden spec.containers[0].livenessProbe.httpGet: Forbidden: may not specify more than 1 handler type",
                "Invalid spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                "Required spec.containers[0].readinessProbe: Required value: must specify a handler type",
                "Invalid spec.containers[0].readinessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
                "NotSupported spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ],
        );
    }

    #[test]
    fn pod_volume_problems() {
        // Volume names unique, exactly one source each, file modes, mounts naming declared
        // volumes at distinct paths.
        check(
            "Pod",
            pod_with(json!({
                "volumes": [
                    {"name": "data", "emptyDir": {}, "hostPath": {"path": "/x"}},
                    {"name": "cfg", "configMap": {"name": "c"}},
                    {"name": "cfg", "secret": {"secretName": "s"}},
                    {"name": "keys", "secret": {"secretName": "s", "defaultMode": 1000}},
                ],
                "containers": [{"name": "web", "image": "nginx", "volumeMounts": [
                    {"name": "missing", "mountPath": "/a"}, {"name": "cfg", "mountPath": "/a", "subPath": "../x"}]}],
            })),
            None,
            true,
            &[
                "Forbidden spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
                "Duplicate spec.volumes[2].name: Duplicate value: \"cfg\"",
                "Invalid spec.volumes[3].secret.defaultMode: Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive",
                "NotFound spec.containers[0].volumeMounts[0].name: Not found: \"missing\"",
                "Invalid spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/a\": must be unique",
                "Invalid spec.containers[0].volumeMounts.subPath: Invalid value: \"../x\": must not contain '..'",
            ],
        );
    }

    #[test]
    fn pod_update_rules() {
        // Only images, deadlines, added tolerations and removed gates may change; metadata
        // names and uids stay; containers are neither added nor removed.
        let old = pod_with(
            json!({"containers": [container("web")], "tolerations": [{"key": "a", "operator": "Exists"}]}),
        );
        let mut allowed = old.clone();
        allowed["spec"]["containers"][0]["image"] = json!("nginx:1.26");
        allowed["spec"]["tolerations"] =
            json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]);
        check("Pod", allowed, Some(old.clone()), true, &[]);

        let mut spec_changed = old.clone();
        spec_changed["spec"]["restartPolicy"] = json!("Never");
        spec_changed["spec"]["tolerations"] = json!([]);
        check(
            "Pod",
            spec_changed,
            Some(old.clone()),
            true,
            &[
                "Forbidden spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds",
                "Forbidden spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n- restartPolicy: \"Always\"\n+ restartPolicy: \"Never\"\n",
            ],
        );

        let mut old_with_uid = old.clone();
        old_with_uid["metadata"]["uid"] = json!("u1");
        let mut renamed = renamed(old.clone(), "other");
        renamed["metadata"]["uid"] = json!("u2");
        check(
            "Pod",
            renamed,
            Some(old_with_uid),
            true,
            &[
                "Invalid metadata.name: Invalid value: \"other\": field is immutable",
                "Invalid metadata.uid: Invalid value: \"u2\": field is immutable",
            ],
        );

        let mut more = old.clone();
        more["spec"]["containers"] = json!([container("web"), container("sidecar")]);
        check(
            "Pod",
            more,
            Some(old),
            true,
            &["Forbidden spec.containers: Forbidden: pod updates may not add or remove containers"],
        );
    }

    #[test]
    fn deployment_problems() {
        // Selector required, matching the template, strategy fields and the template policy.
        check(
            "Deployment",
            deployment_with(json!({"replicas": -1, "selector": {"matchLabels": {"app": "api"}},
                "strategy": {"rollingUpdate": {"maxSurge": "abc", "maxUnavailable": "120%"}},
                "template": {"spec": {"restartPolicy": "Never"}}})),
            None,
            true,
            &[
                "Invalid spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "Invalid spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
                "NotSupported spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "Invalid spec.strategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"abc\"}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                "Invalid spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"120%\"}: must not be greater than 100%",
            ],
        );
        check(
            "Deployment",
            deployment_with(json!({"selector": null})),
            None,
            true,
            &[
                "Required spec.selector: Required value",
                "Invalid spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            ],
        );
        check(
            "Deployment",
            deployment_with(json!({"selector": {"matchLabels": null}})),
            None,
            true,
            &[
                "Invalid spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
            ],
        );
    }

    #[test]
    fn workload_selectors_are_immutable() {
        // Deployments and ReplicaSets keep their selector; a scale is fine.
        let old = deployment_with(json!({}));
        let scaled = deployment_with(json!({"replicas": 3}));
        check("Deployment", scaled, Some(old.clone()), true, &[]);
        let relabeled = deployment_with(json!({"selector": {"matchLabels": {"app": "web", "tier": "front"}},
            "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}}}));
        check(
            "Deployment",
            relabeled,
            Some(old),
            true,
            &[
                "Invalid spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"tier\":\"front\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
            ],
        );
    }

    #[test]
    fn service_problems() {
        // Ports required unless headless, names when several, ranges, protocol, type, node ports.
        check(
            "Service",
            service_with(json!({"ports": []})),
            None,
            true,
            &["Required spec.ports: Required value"],
        );
        check("Service", service_with(json!({"ports": [], "clusterIP": "None"})), None, true, &[]);
        check(
            "Service",
            service_with(json!({"type": "NodePort", "ports": [
                {"port": 0, "nodePort": 80}, {"name": "http", "port": 80, "protocol": "ICMP"}, {"name": "http", "port": 81}]})),
            None,
            true,
            &[
                "Required spec.ports[0].name: Required value",
                "Invalid spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "Invalid spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "NotSupported spec.ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "Duplicate spec.ports[2].name: Duplicate value: \"http\"",
                "Invalid spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
            ],
        );
        check(
            "Service",
            service_with(json!({"type": "Magic"})),
            None,
            true,
            &[
                "NotSupported spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            ],
        );
    }

    #[test]
    fn service_cluster_ip_is_kept() {
        // Once allocated, a cluster IP stays; an update that leaves it out unsets it.
        let old = service_with(json!({"clusterIP": "10.96.0.10"}));
        check("Service", service_with(json!({"clusterIP": "10.96.0.10"})), Some(old.clone()), true, &[]);
        check(
            "Service",
            service_with(json!({"clusterIP": "10.96.0.11"})),
            Some(old.clone()),
            true,
            &["Invalid spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"],
        );
        check(
            "Service",
            service_with(json!({})),
            Some(old),
            true,
            &["Invalid spec.clusterIPs[0]: Invalid value: []string(nil): primary clusterIP can not be unset"],
        );
    }

    #[test]
    fn config_map_and_secret_problems() {
        // Keys are config keys, the data fits in 1 MiB, immutable data stays, Secret types stay.
        check(
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "n"}, "data": {"a/b": "x", "big": "y".repeat(1024 * 1024)}}),
            None,
            true,
            &[
                "Invalid data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "TooLong []: Too long: must have at most 1048576 bytes",
            ],
        );
        let frozen =
            json!({"metadata": {"name": "c", "namespace": "n"}, "immutable": true, "data": {"a": "1"}});
        let changed =
            json!({"metadata": {"name": "c", "namespace": "n"}, "immutable": true, "data": {"a": "2"}});
        check(
            "ConfigMap",
            changed,
            Some(frozen),
            true,
            &["Forbidden data: Forbidden: field is immutable when `immutable` is set"],
        );
        let opaque = json!({"metadata": {"name": "s", "namespace": "n"}, "data": {"..x": "eA=="}});
        check(
            "Secret",
            opaque.clone(),
            None,
            true,
            &["Invalid data[..x]: Invalid value: \"..x\": must not start with '..'"],
        );
        let tls = json!({"metadata": {"name": "s", "namespace": "n"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        check(
            "Secret",
            tls,
            Some(opaque),
            true,
            &[
                "Invalid type: Invalid value: \"kubernetes.io/tls\": field is immutable",
                "Required data[tls.key]: Required value",
            ],
        );
    }

    #[test]
    fn small_kind_problems() {
        // HPA bounds and metrics, EndpointSlice address type, Endpoints addresses, Lease and
        // Event fields, Node taints.
        check(
            "HorizontalPodAutoscaler",
            json!({"metadata": {"name": "h", "namespace": "n"}, "spec": {"minReplicas": 5, "maxReplicas": 2,
                "scaleTargetRef": {"kind": "Deployment"}, "metrics": [{"type": "Pods"}]}}),
            None,
            true,
            &[
                "Invalid spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
                "Required spec.scaleTargetRef.name: Required value",
                "Required spec.metrics[0].pods: Required value: must populate information for the given metric source",
            ],
        );
        check(
            "EndpointSlice",
            json!({"metadata": {"name": "s", "namespace": "n"}, "addressType": "IP", "endpoints": [{"addresses": []}]}),
            None,
            true,
            &[
                "NotSupported addressType: Unsupported value: \"IP\": supported values: \"FQDN\", \"IPv4\", \"IPv6\"",
                "Required endpoints[0].addresses: Required value: must contain at least 1 address",
            ],
        );
        check(
            "Endpoints",
            json!({"metadata": {"name": "e", "namespace": "n"}, "subsets": [{"addresses": [{"ip": "169.254.0.1"}, {"ip": "x"}, {"ip": "127.0.0.1"}]}, {}]}),
            None,
            true,
            &[
                "Invalid subsets[0].addresses[0].ip: Invalid value: \"169.254.0.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)",
                "Invalid subsets[0].addresses[1].ip: Invalid value: \"x\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "Invalid subsets[0].addresses[1].ip: Invalid value: \"x\": must be a valid IP address",
                "Required subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`",
            ],
        );
        check(
            "Lease",
            json!({"metadata": {"name": "l", "namespace": "n"}, "spec": {"leaseDurationSeconds": 0, "preferredHolder": "a"}}),
            None,
            true,
            &[
                "Invalid spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "Forbidden spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined",
            ],
        );
        check(
            "Event",
            json!({"metadata": {"name": "e", "namespace": "default"}, "involvedObject": {"namespace": "other"}}),
            None,
            true,
            &["Invalid involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"],
        );
        check(
            "Node",
            json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "a", "effect": "Sometimes"}, {"key": "b", "effect": "NoSchedule"}, {"key": "b", "effect": "NoSchedule"}]}}),
            None,
            false,
            &[
                "NotSupported metadata.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
                "Duplicate metadata.taints[2]: Duplicate value: core.Taint{Key:\"b\", Value:\"\", Effect:\"NoSchedule\", TimeAdded:<nil>}: taints must be unique by key and effect pair",
            ],
        );
    }

    #[test]
    fn odd_input_gives_a_type_cause_and_never_panics() {
        // Wrong JSON types fail decoding as in kube-apiserver: one FieldValueTypeInvalid cause.
        // Nothing panics, for any kind, with or without an old object of any shape.
        let odd = [
            json!(null),
            json!([1, 2]),
            json!("pod"),
            json!({"metadata": []}),
            json!({"metadata": {"name": 5}}),
            json!({"spec": []}),
            json!({"spec": {"containers": {"name": "c"}}}),
            json!({"spec": {"containers": [null, 3, {"image": 7, "ports": "80"}]}}),
            json!({"spec": {"template": [], "selector": "app=web", "replicas": "one"}}),
            json!({"spec": {"ports": [{"port": "eighty"}], "type": 3}}),
            json!({"data": [1], "stringData": {"a": 1}, "subsets": {}, "endpoints": "x", "addressType": 4}),
            json!({"spec": {"metrics": {}, "behavior": {"scaleUp": "fast"}, "maxReplicas": 1.5}}),
        ];
        let kinds = [
            "Namespace",
            "Node",
            "Pod",
            "Service",
            "Endpoints",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Event",
            "Deployment",
            "ReplicaSet",
            "Lease",
            "EndpointSlice",
            "HorizontalPodAutoscaler",
            "Unknown",
        ];
        for kind in kinds {
            for object in &odd {
                for old in [None, Some(&odd[1]), Some(&odd[7])] {
                    validate(kind, object, old, true);
                }
            }
        }
        let causes = validate(
            "Pod",
            &json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": [{"name": "c", "image": 7}]}}),
            None,
            true,
        );
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].reason.as_deref(), Some("FieldValueTypeInvalid"));
        assert_eq!(causes[0].field, None);
        assert!(
            causes[0]
                .message
                .as_deref()
                .unwrap()
                .starts_with("Invalid value: Pod cannot be handled as a Pod: invalid type: integer `7`")
        );
    }

    #[test]
    fn formats_match_upstream() {
        // A few format checks against upstream's own test cases.
        assert!(is_dns1123_subdomain("a.b-c.d").is_empty());
        assert_eq!(is_dns1123_label(&"a".repeat(64)), vec!["must be no more than 63 characters".to_string()]);
        assert!(is_qualified_name("example.com/MyName").is_empty());
        assert_eq!(is_qualified_name("a/b/c").len(), 1);
        assert_eq!(is_qualified_name("/a"), vec!["prefix part must be non-empty".to_string()]);
        assert!(is_label_value("").is_empty());
        assert_eq!(parse_ip_sloppy("010.001.0.1"), Some(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1))));
        assert_eq!(parse_ip_sloppy("256.0.0.1"), None);
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
    }

    #[test]
    fn invalid_message_formats_like_to_aggregate() {
        // One cause without brackets, several in brackets, duplicates dropped, group qualifies
        // the kind.
        let cause = |field: &str, message: &str| StatusCause {
            reason: Some("FieldValueRequired".into()),
            field: Some(field.into()),
            message: Some(message.into()),
        };
        assert_eq!(
            invalid_message("Pod", "", "x", &[cause("spec.containers[0].image", "Required value")]),
            "Pod \"x\" is invalid: spec.containers[0].image: Required value"
        );
        let causes = [
            cause("spec.selector", "Required value"),
            cause("spec.replicas", "Invalid value: -1"),
            cause("spec.selector", "Required value"),
        ];
        assert_eq!(
            invalid_message("Deployment", "apps", "web", &causes),
            "Deployment.apps \"web\" is invalid: [spec.selector: Required value, spec.replicas: Invalid value: -1]"
        );
    }
}
