//! Joining the cluster: a node trades a bootstrap token for its own credential.
//!
//! `POST /shoal/v1/join` certifies a node's public key as `system:node:<name>` in
//! `system:nodes`, for client and server use; the node's private key never leaves it.
//! `GET /shoal/v1/ca` answers anyone with the cluster CA certificate (as Kubernetes'
//! `kube-public/cluster-info` does), so a node given only the CA's hash can fetch and pin it.
//! Both are served outside the Kubernetes resource paths; `api` authenticates and authorizes
//! the join (`auth::may_join`) before its body is read.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause;
use serde::{Deserialize, Serialize};
use shoal_pki::{IssueRequest, P256PublicKey, Usage};

use crate::api::{Api, Reply};
use crate::auth::{NODE_USER_PREFIX, NODES_GROUP, User};
use crate::error::ApiError;
use crate::server::{Body, full};
use crate::validation::{go_quote, invalid_message, is_dns1123_subdomain};

pub const JOIN_PATH: &str = "/shoal/v1/join";
pub const CA_PATH: &str = "/shoal/v1/ca";
/// Addresses one node credential may name: a node has a few interfaces and names, and a
/// certificate listing hundreds is a mistake, or an attempt to make one credential serve
/// as many hosts.
pub const NODE_ADDRESSES_MAX: usize = 16;
/// A join request is three short fields; anything larger is refused before it is parsed.
pub const JOIN_BODY_BYTES_MAX: usize = 64 << 10;
/// Lifetime of a node credential, kubeadm's for the certificates it issues.
pub const NODE_CREDENTIAL_VALIDITY_DAYS: u32 = 365;
/// The media type of the CA endpoint's answer, a PEM certificate.
pub const PEM_CONTENT_TYPE: &str = "application/x-pem-file";

/// The body of `POST /shoal/v1/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    /// A DNS-1123 subdomain; the credential's user is `system:node:<nodeName>`.
    pub node_name: String,
    /// Base64 of the raw uncompressed P-256 point (65 bytes, `0x04 || X || Y`).
    pub public_key: String,
    /// IP addresses and DNS names the credential serves as; at most [`NODE_ADDRESSES_MAX`].
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// The answer to a join: the node's certificate and the CA that issued it, both PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    pub certificate: String,
    pub ca_certificate: String,
}

/// Issues the node credential `body` asks for, signed by this server's CA.
pub(crate) fn join(api: &Api, user: &User, body: &[u8]) -> Result<Reply, ApiError> {
    let signer = api.signer.as_ref().ok_or_else(|| ApiError::ServiceUnavailable {
        message: "this API server does not hold the cluster CA's key, so it cannot issue node credentials"
            .to_owned(),
    })?;
    let request: JoinRequest = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("the join request is not valid JSON: {error}")))?;
    let (issue, public_key) = check(&request).map_err(|causes| ApiError::Invalid {
        message: invalid_message("JoinRequest", "shoal", &request.node_name, &causes),
        causes,
        name: request.node_name.clone(),
        group: "shoal".to_owned(),
        kind: "JoinRequest".to_owned(),
    })?;
    let certificate = signer.issue_for_key(&issue, &public_key).map_err(|error| {
        tracing::error!(error = %error, node = %request.node_name, "issuing a node credential failed");
        ApiError::internal("issuing the node credential failed")
    })?;
    tracing::info!(user = %user.name, node = %request.node_name, "issued a node credential");
    Ok(Reply::ok(JoinResponse { certificate, ca_certificate: signer.cert_pem().to_owned() }))
}

/// The CA certificate, to anyone who asks.
pub(crate) fn cluster_ca(api: &Api, method: &http::Method) -> Result<Reply, ApiError> {
    if method != http::Method::GET {
        return Err(ApiError::MethodNotAllowed { message: format!("{method} is not supported here") });
    }
    let pem = api.cluster_ca_pem.as_deref().ok_or(ApiError::NoSuchPath)?;
    let response: Response<Body> = Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, PEM_CONTENT_TYPE)
        .body(full(Bytes::copy_from_slice(pem.as_bytes())))
        .expect("a response with valid headers builds");
    Ok(Reply::Raw(response))
}

/// The certificate a valid request asks for and the key to certify, or every field's problem.
fn check(request: &JoinRequest) -> Result<(IssueRequest, P256PublicKey), Vec<StatusCause>> {
    let mut causes = Vec::new();
    let mut invalid = |field: &str, value: &str, message: &str| {
        causes.push(StatusCause {
            reason: Some("FieldValueInvalid".to_owned()),
            message: Some(format!("Invalid value: {}: {message}", go_quote(value))),
            field: Some(field.to_owned()),
        });
    };
    for message in is_dns1123_subdomain(&request.node_name) {
        invalid("nodeName", &request.node_name, &message);
    }
    let public_key = match STANDARD.decode(&request.public_key) {
        Ok(point) => P256PublicKey::from_point(&point)
            .map_err(|error| invalid("publicKey", &request.public_key, &error.to_string()))
            .ok(),
        Err(_) => {
            invalid("publicKey", &request.public_key, "must be base64");
            None
        }
    };
    let mut ip_addresses: Vec<IpAddr> = Vec::new();
    let mut dns_names: Vec<String> = Vec::new();
    if request.addresses.len() > NODE_ADDRESSES_MAX {
        let count = request.addresses.len().to_string();
        invalid("addresses", &count, &format!("must have at most {NODE_ADDRESSES_MAX} items"));
    }
    for (index, address) in request.addresses.iter().enumerate().take(NODE_ADDRESSES_MAX) {
        if let Ok(ip) = address.parse::<IpAddr>() {
            if !ip_addresses.contains(&ip) {
                ip_addresses.push(ip);
            }
        } else if is_dns1123_subdomain(address).is_empty() {
            if !dns_names.contains(address) {
                dns_names.push(address.clone());
            }
        } else {
            invalid(&format!("addresses[{index}]"), address, "must be an IP address or a DNS-1123 subdomain");
        }
    }
    match public_key {
        Some(public_key) if causes.is_empty() => {
            let issue = IssueRequest {
                common_name: format!("{NODE_USER_PREFIX}{}", request.node_name),
                organizations: vec![NODES_GROUP.to_owned()],
                dns_names,
                ip_addresses,
                // The agent dials the API with it and serves its own API with it.
                usage: Usage::Both,
                validity_days: NODE_CREDENTIAL_VALIDITY_DAYS,
            };
            Ok((issue, public_key))
        }
        _ => Err(causes),
    }
}

#[cfg(test)]
mod tests {
    use shoal_pki::NodeKey;

    use super::*;

    fn point() -> String {
        STANDARD.encode(NodeKey::generate().expect("key").public_key().point())
    }

    fn request(node_name: &str, public_key: &str, addresses: &[&str]) -> JoinRequest {
        JoinRequest {
            node_name: node_name.to_owned(),
            public_key: public_key.to_owned(),
            addresses: addresses.iter().map(|address| (*address).to_owned()).collect(),
        }
    }

    /// The fields `check` complains about, or the issued names if it accepts.
    fn fields(request: &JoinRequest) -> Result<(String, Vec<String>, Vec<IpAddr>), Vec<String>> {
        match check(request) {
            Ok((issue, _)) => Ok((issue.common_name, issue.dns_names, issue.ip_addresses)),
            Err(causes) => Err(causes.into_iter().map(|cause| cause.field.unwrap_or_default()).collect()),
        }
    }

    // A valid request becomes the node's identity with its addresses split into IPs and DNS
    // names, duplicates dropped; each bad field is reported under its own name.
    #[test]
    fn requests_are_checked() {
        let key = point();
        let localhost: IpAddr = "127.0.0.1".parse().expect("IP");
        assert_eq!(
            fields(&request("node-a", &key, &["127.0.0.1", "node-a", "node-a.example", "127.0.0.1"])),
            Ok((
                "system:node:node-a".to_owned(),
                vec!["node-a".to_owned(), "node-a.example".to_owned()],
                vec![localhost]
            ))
        );
        assert!(fields(&request("n1", &key, &["::1"])).is_ok());
        assert!(fields(&request("n1", &key, &[])).is_ok());
        assert_eq!(fields(&request("Node_A", &key, &[])), Err(vec!["nodeName".to_owned()]));
        assert_eq!(fields(&request("", &key, &[])), Err(vec!["nodeName".to_owned()]));
        assert_eq!(fields(&request("n1", "not base64!", &[])), Err(vec!["publicKey".to_owned()]));
        let short = STANDARD.encode([4u8; 33]);
        assert_eq!(fields(&request("n1", &short, &[])), Err(vec!["publicKey".to_owned()]));
        let off_curve = STANDARD.encode([[4u8].as_slice(), &[0u8; 64]].concat());
        assert_eq!(fields(&request("n1", &off_curve, &[])), Err(vec!["publicKey".to_owned()]));
        assert_eq!(
            fields(&request("n1", &key, &["10.0.0.1", "*.example", "bad name"])),
            Err(vec!["addresses[1]".to_owned(), "addresses[2]".to_owned()])
        );
        let many = vec!["10.0.0.1"; NODE_ADDRESSES_MAX + 1];
        assert_eq!(fields(&request("n1", &key, &many)), Err(vec!["addresses".to_owned()]));
        let most = vec!["10.0.0.1"; NODE_ADDRESSES_MAX];
        assert!(fields(&request("n1", &key, &most)).is_ok());
    }

    // The wire format is the documented camelCase JSON, and unknown fields are refused.
    #[test]
    fn wire_format() {
        let parsed: JoinRequest =
            serde_json::from_str(r#"{"nodeName": "n1", "publicKey": "BA==", "addresses": ["node-a"]}"#)
                .expect("parses");
        assert_eq!(parsed, request("n1", "BA==", &["node-a"]));
        let bare: JoinRequest =
            serde_json::from_str(r#"{"nodeName": "n1", "publicKey": "BA=="}"#).expect("parses");
        assert!(bare.addresses.is_empty());
        assert!(
            serde_json::from_str::<JoinRequest>(r#"{"nodeName": "n1", "publicKey": "", "x": 1}"#).is_err()
        );
        let response = JoinResponse { certificate: "c".into(), ca_certificate: "a".into() };
        assert_eq!(
            serde_json::to_value(&response).expect("serializes"),
            serde_json::json!({"certificate": "c", "caCertificate": "a"})
        );
    }
}
