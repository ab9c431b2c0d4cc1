//! Who a verified peer certificate names: its user name and groups, read as Kubernetes reads them.

use crate::der::{self, CertificateView};

/// The identity a client certificate asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject's `CN=`: the Kubernetes user name.
    pub common_name: String,
    /// The subject's `O=` values, in certificate order: the Kubernetes groups.
    pub organizations: Vec<String>,
}

/// Reads the subject's common name and organizations from a DER certificate.
///
/// This trusts the certificate: call it only on one rustls has verified, such as the first
/// of `peer_certificates()` after a handshake with client authentication. Returns `None`
/// when the subject has no common name or several (the user name would be ambiguous), when
/// a common name or organization uses a string encoding other than UTF-8, Printable or IA5,
/// or when the certificate is malformed.
pub fn peer_identity(cert_der: &[u8]) -> Option<PeerIdentity> {
    let certificate = CertificateView::parse(cert_der)?;
    let mut common_names = Vec::new();
    let mut organizations = Vec::new();
    for (oid, value) in der::name_attributes(certificate.subject())? {
        let values = match oid {
            der::OID_COMMON_NAME => &mut common_names,
            der::OID_ORGANIZATION => &mut organizations,
            _ => continue,
        };
        values.push(der::directory_string(value)?.to_owned());
    }
    let [common_name]: [String; 1] = common_names.try_into().ok()?;
    Some(PeerIdentity { common_name, organizations })
}
