//! Pod templates as the Deployment controller compares and names them: semantic equality that
//! ignores the `pod-template-hash` label, and the hash itself.
//!
//! Upstream hashes a Go-specific dump of the template (`hashutil.DeepHashObject`); shoal hashes
//! the template's canonical JSON with the same function (32-bit FNV-1a), the collisionCount
//! appended the same way, and encodes the number as upstream's `rand.SafeEncodeString` does. The
//! hashes are stable across shoal versions and servers, but differ from Kubernetes' own.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

/// The label that ties a ReplicaSet and its pods to one template of a Deployment.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The characters `SafeEncodeString` maps digits to: no vowels, no look-alikes.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The template in a canonical form: without the hash label, the creationTimestamp, and every
/// null, empty object and empty list (which Kubernetes' semantic equality treats as unset).
pub fn canonical(template: &PodTemplateSpec) -> Value {
    let mut value = serde_json::to_value(template).expect("a pod template serializes");
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("creationTimestamp");
        if let Some(labels) = metadata.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
    }
    prune(&mut value);
    value
}

/// Whether two templates are the same but for the hash label (upstream's `EqualIgnoreHash`).
pub fn equal_ignoring_hash(left: &PodTemplateSpec, right: &PodTemplateSpec) -> bool {
    canonical(left) == canonical(right)
}

/// The `pod-template-hash` of `template` with `collision_count`: FNV-1a over the canonical
/// JSON, then the count as 8 little-endian bytes (4 of them zero), as upstream's `ComputeHash`.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let text = serde_json::to_string(&canonical(template)).expect("JSON serializes");
    let mut hash = fnv1a_32(0x811c_9dc5, text.as_bytes());
    if let Some(count) = collision_count {
        let mut bytes = [0_u8; 8];
        bytes[..4].copy_from_slice(&u32::from_ne_bytes(count.to_ne_bytes()).to_le_bytes());
        hash = fnv1a_32(hash, &bytes);
    }
    safe_encode(&hash.to_string())
}

fn fnv1a_32(mut hash: u32, bytes: &[u8]) -> u32 {
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

fn safe_encode(text: &str) -> String {
    text.bytes().map(|byte| char::from(SAFE_ALPHABET[usize::from(byte) % SAFE_ALPHABET.len()])).collect()
}

/// Removes nulls, empty objects and empty lists, inside out. serde_json's maps are ordered by
/// key, so the JSON text of the result is canonical.
fn prune(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for child in map.values_mut() {
                prune(child);
            }
            map.retain(|_, child| !is_empty(child));
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                prune(item);
            }
        }
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn template(value: Value) -> PodTemplateSpec {
        serde_json::from_value(value).expect("a template")
    }

    // The hash ignores the hash label, unset-versus-empty fields and creationTimestamp (what
    // `kubectl rollout undo` sends back), changes with the image and with collisionCount, and
    // is spelled in upstream's alphabet.
    #[test]
    fn hash_is_stable_and_sensitive_to_what_matters() {
        let base = template(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "v1"}]},
        }));
        let undone = template(json!({
            "metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}, "creationTimestamp": null},
            "spec": {"containers": [{"name": "c", "image": "v1", "resources": {}}]},
        }));
        let changed = template(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "v2"}]},
        }));
        assert!(equal_ignoring_hash(&base, &undone));
        assert!(!equal_ignoring_hash(&base, &changed));
        let hash = template_hash(&base, None);
        assert_eq!(hash, template_hash(&undone, None));
        assert_ne!(hash, template_hash(&changed, None));
        assert_ne!(hash, template_hash(&base, Some(1)));
        assert_ne!(template_hash(&base, Some(1)), template_hash(&base, Some(2)));
        assert!(hash.bytes().all(|byte| SAFE_ALPHABET.contains(&byte)), "{hash}");
        assert!(!hash.is_empty() && hash.len() <= 10, "{hash}");
    }

    // FNV-1a's published test vectors.
    #[test]
    fn fnv1a_matches_the_reference() {
        assert_eq!(fnv1a_32(0x811c_9dc5, b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(0x811c_9dc5, b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(0x811c_9dc5, b"foobar"), 0xbf9c_f968);
    }
}
