//! Service ClusterIPs and NodePorts, claimed in the store in the same transaction as the
//! Service itself.
//!
//! Each address or port in use is a key, `/registry/core/serviceips/<ip>` or
//! `/registry/core/servicenodeports/<port>`, created only if absent and deleted with its
//! Service. Two concurrent creates that pick the same address cannot both commit: the
//! second transaction's "absent" compare fails and it picks again. The keys are the
//! allocator's whole state, so a new leader or a restarted server has nothing to rebuild.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use rand::Rng as _;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects::REGISTRY_PREFIX;

/// The NodePort range, as in Kubernetes.
pub const NODE_PORT_MIN: u16 = 30_000;
pub const NODE_PORT_MAX: u16 = 32_767;
/// Creates tried per Service before giving up: the first with a random choice, the others
/// with choices made knowing every claim in the store, so only concurrent creates that keep
/// winning the same addresses exhaust it.
pub const ALLOCATION_ATTEMPTS_MAX: usize = 16;

/// Claim keys known to be taken (`ip_key`, `node_port_key`): empty on a create's first try,
/// when a random pick from a mostly free range almost always succeeds; read from the store
/// after a pick collided.
pub type Taken = HashSet<String>;

/// The service address range.
///
/// The default, `127.96.0.0/16`, is loopback: with the process runtime pods share the host's
/// network, and every node's proxy listens on the ClusterIPs of all Services itself, so a
/// loopback address reaches the local proxy on any machine without root or routes. (Kubernetes
/// uses `10.96.0.0/12`; a runtime that gives pods their own network namespace would use such a
/// range, bound to a dummy interface on each node.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Default for ServiceCidr {
    fn default() -> Self {
        Self { network: Ipv4Addr::new(127, 96, 0, 0), prefix: 16 }
    }
}

impl std::str::FromStr for ServiceCidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) =
            text.split_once('/').ok_or_else(|| format!("{text:?} is not address/prefix"))?;
        let network: Ipv4Addr = address.parse().map_err(|_| format!("{address:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("{prefix:?} is not a prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("a service range needs a prefix between /8 and /30, not /{prefix}"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Self { network: Ipv4Addr::from(u32::from(network) & mask), prefix })
    }
}

/// The cluster DNS Service's address in the range, as kubeadm places kube-dns: the tenth.
pub const DNS_SERVICE_HOST: u32 = 10;

impl ServiceCidr {
    /// The `n`th address of the range (`n` < the range's size).
    pub fn host(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }

    fn size(self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    pub fn contains(self, address: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(address) & mask == u32::from(self.network)
    }

    /// The size of the static band at the bottom of the range, as in Kubernetes: addresses
    /// chosen by the allocator come from above it while any are free, so the well-known
    /// addresses users and shoal pick themselves (the DNS Service's `.10`) stay available.
    fn static_band(self) -> u32 {
        (self.size() / 16).clamp(16, 256)
    }

    /// A free host address: not the network or broadcast address, not the first (Kubernetes
    /// keeps it for the `kubernetes` Service), not in `taken`; from the dynamic band above the
    /// static one while it has room. `None` when the range is full.
    fn free_host(self, taken: &Taken) -> Option<Ipv4Addr> {
        let network = u32::from(self.network);
        let (first, band, last) = (2, self.static_band().min(self.size() - 2), self.size() - 2);
        let is_free = |offset: u32| {
            let address = Ipv4Addr::from(network + offset);
            (!taken.contains(&ip_key(&address.to_string()))).then_some(address)
        };
        scan_from_random(band, last, is_free).or_else(|| scan_from_random(first, band, is_free))
    }
}

/// The first `pick(n)` that is `Some` for n in `[low, high]`, scanning upwards from a random
/// point and wrapping around, so that concurrent creates rarely collide.
fn scan_from_random<T>(low: u32, high: u32, pick: impl Fn(u32) -> Option<T>) -> Option<T> {
    if low > high {
        return None;
    }
    let span = high - low + 1;
    let start = rand::rng().random_range(0..span);
    (0..span).find_map(|step| pick(low + (start + step) % span))
}

pub fn ip_key(address: &str) -> String {
    format!("{REGISTRY_PREFIX}core/serviceips/{address}")
}

pub fn node_port_key(port: u16) -> String {
    format!("{}{port}", node_port_key_prefix())
}

pub fn node_port_key_prefix() -> String {
    format!("{REGISTRY_PREFIX}core/servicenodeports/")
}

/// The claim keys a stored Service holds.
pub fn claims_of(service: &Value) -> Vec<String> {
    let mut claims = Vec::new();
    if let Some(ip) = service.pointer("/spec/clusterIP").and_then(Value::as_str)
        && ip.parse::<Ipv4Addr>().is_ok()
    {
        claims.push(ip_key(ip));
    }
    for port in service.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
        if let Some(node_port) =
            port.get("nodePort").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok())
        {
            claims.push(node_port_key(node_port));
        }
    }
    claims
}

/// Fills in a new Service's ClusterIP and NodePorts where the client left them empty (free
/// ones, as far as `taken` knows) and returns the keys to claim; fields the client set are
/// checked against the ranges.
pub fn assign(
    service: &mut Value,
    range: ServiceCidr,
    requested: &Value,
    taken: &Taken,
) -> Result<Vec<String>, ApiError> {
    let service_type =
        service.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_owned();
    if service_type == "ExternalName" {
        return Ok(Vec::new());
    }
    let requested_ip = requested.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
    match requested_ip {
        "None" => {}
        "" => {
            let address = range.free_host(taken).ok_or_else(|| range_full("serviceIP"))?.to_string();
            service["spec"]["clusterIP"] = json!(address);
            service["spec"]["clusterIPs"] = json!([address]);
        }
        given => {
            let address: Ipv4Addr =
                given.parse().map_err(|_| invalid_ip(given, "must be a valid IPv4 address"))?;
            if !range.contains(address) {
                return Err(invalid_ip(
                    given,
                    &format!(
                        "provided IP is not in the valid range. The range of valid IPs is {}/{}",
                        range.network, range.prefix
                    ),
                ));
            }
        }
    }
    if matches!(service_type.as_str(), "NodePort" | "LoadBalancer") {
        let requested_ports =
            requested.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
        // Ports this Service already holds count as taken, so two of its ports never draw
        // the same node port.
        let mut taken = taken.clone();
        taken.extend(claims_of(service));
        if let Some(ports) = service.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for (index, port) in ports.iter_mut().enumerate() {
                let asked =
                    requested_ports.get(index).and_then(|p| p.get("nodePort")).and_then(Value::as_u64);
                if asked.is_none_or(|asked| asked == 0) {
                    let is_free = |port: u32| {
                        let key = node_port_key(u16::try_from(port).ok()?);
                        (!taken.contains(&key)).then_some((port, key))
                    };
                    let (chosen, key) =
                        scan_from_random(u32::from(NODE_PORT_MIN), u32::from(NODE_PORT_MAX), is_free)
                            .ok_or_else(|| range_full("nodePort"))?;
                    port["nodePort"] = json!(chosen);
                    taken.insert(key);
                }
            }
        }
    }
    Ok(claims_of(service))
}

/// Kubernetes' words for an exhausted range (a 500, as there).
fn range_full(what: &str) -> ApiError {
    ApiError::internal(format!("failed to allocate a {what}: range is full"))
}

fn invalid_ip(given: &str, detail: &str) -> ApiError {
    let cause = k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause {
        reason: Some("FieldValueInvalid".into()),
        message: Some(format!("Invalid value: [\"{given}\"]: {detail}")),
        field: Some("spec.clusterIPs".into()),
    };
    ApiError::Invalid {
        message: format!("Service is invalid: spec.clusterIPs: Invalid value: [\"{given}\"]: {detail}"),
        causes: vec![cause],
        name: String::new(),
        group: String::new(),
        kind: "Service".into(),
    }
}

/// The error when a claim of the client's own choosing is taken.
pub fn already_allocated(service: &Value, claim: &str) -> ApiError {
    let (field, value) = if claim.contains("/serviceips/") {
        ("spec.clusterIPs", format!("[\"{}\"]", claim.rsplit('/').next().unwrap_or("")))
    } else {
        ("spec.ports[*].nodePort", claim.rsplit('/').next().unwrap_or("").to_owned())
    };
    let detail = "provided value is already allocated";
    let cause = k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause {
        reason: Some("FieldValueInvalid".into()),
        message: Some(format!("Invalid value: {value}: {detail}")),
        field: Some(field.into()),
    };
    let name = crate::meta::name(service).to_owned();
    ApiError::Invalid {
        message: format!("Service \"{name}\" is invalid: {field}: Invalid value: {value}: {detail}"),
        causes: vec![cause],
        name,
        group: String::new(),
        kind: "Service".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Assigned addresses and ports fall in their ranges; given ones are kept or refused;
    // headless and ExternalName Services claim no address.
    #[test]
    fn assignment() {
        let range: ServiceCidr = "10.96.0.0/24".parse().expect("range");
        let mut service = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        let requested = service.clone();
        let claims = assign(&mut service, range, &requested, &Taken::new()).expect("assigned");
        let ip: Ipv4Addr = service["spec"]["clusterIP"].as_str().expect("ip").parse().expect("parses");
        assert!(range.contains(ip) && ip != Ipv4Addr::new(10, 96, 0, 1));
        let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().expect("node port");
        assert!((u64::from(NODE_PORT_MIN)..=u64::from(NODE_PORT_MAX)).contains(&node_port));
        assert_eq!(claims, [ip_key(&ip.to_string()), node_port_key(u16::try_from(node_port).expect("u16"))]);

        let mut headless = json!({"spec": {"clusterIP": "None", "ports": [{"port": 80}]}});
        let requested = headless.clone();
        assert!(assign(&mut headless, range, &requested, &Taken::new()).expect("headless").is_empty());
        let mut external = json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
        let requested = external.clone();
        assert!(assign(&mut external, range, &requested, &Taken::new()).expect("external").is_empty());
        let mut outside = json!({"spec": {"clusterIP": "10.97.0.5"}});
        let requested = outside.clone();
        assert!(assign(&mut outside, range, &requested, &Taken::new()).is_err());
        assert!("10.96.0.0/31".parse::<ServiceCidr>().is_err());
        assert!("nonsense".parse::<ServiceCidr>().is_err());
    }

    // Knowing what is taken, the allocator finds the last free address and port instead of
    // guessing, prefers the dynamic band above the static one, gives each port of one Service
    // its own node port, and says "range is full" only when it is.
    #[test]
    fn allocation_avoids_what_is_taken() {
        let range: ServiceCidr = "10.96.0.0/26".parse().expect("range");
        let static_band = range.static_band();
        assert_eq!(static_band, 16);
        let dynamic: Taken = (static_band..=62).map(|offset| ip_key(&format!("10.96.0.{offset}"))).collect();
        for _ in 0..20 {
            let address = range.free_host(&Taken::new()).expect("free");
            assert!(u32::from(address) - u32::from(range.network) >= static_band, "{address} is static");
            let mut almost_full = dynamic.clone();
            almost_full
                .extend((2..16).filter(|offset| *offset != 7).map(|o| ip_key(&format!("10.96.0.{o}"))));
            assert_eq!(range.free_host(&almost_full), Some(Ipv4Addr::new(10, 96, 0, 7)));
            almost_full.insert(ip_key("10.96.0.7"));
            assert_eq!(range.free_host(&almost_full), None);
        }
        let mut service = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}});
        let requested = service.clone();
        let ports_taken: Taken = (NODE_PORT_MIN..NODE_PORT_MAX - 1).map(node_port_key).collect();
        let claims = assign(&mut service, range, &requested, &ports_taken).expect("two ports left");
        let ports: HashSet<_> = service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| p["nodePort"].as_u64())
            .collect();
        assert_eq!(
            ports,
            HashSet::from([Some(u64::from(NODE_PORT_MAX - 1)), Some(u64::from(NODE_PORT_MAX))])
        );
        assert_eq!(claims.len(), 3);
        let mut one_too_many =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}, {"port": 82}]}});
        let requested = one_too_many.clone();
        let error = assign(&mut one_too_many, range, &requested, &ports_taken).expect_err("full");
        assert!(error.to_string().contains("failed to allocate a nodePort: range is full"), "{error}");
    }
}
