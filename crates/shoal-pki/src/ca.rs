//! The cluster certificate authority: creating it, storing it, and issuing certificates from it.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SigningKey,
};
use rustls::pki_types::CertificateDer;

use crate::der::{self, CertificateView};
use crate::files::{self, CERT_FILE_MODE, KEY_FILE_MODE};
use crate::{P256PublicKey, PkiError, peer_identity};

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// Lifetime of a cluster CA, as kubeadm's: long enough that rotating it is a rare, planned event.
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// Longest lifetime of an issued certificate; nothing issued is meant to outlive a fresh CA.
pub const ISSUED_VALIDITY_DAYS_MAX: u32 = CA_VALIDITY_DAYS;

/// Certificates start this long before they are issued, so a peer whose clock lags a little
/// accepts them at once instead of failing with "not yet valid".
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(5 * 60);
const SECONDS_PER_DAY: u64 = 24 * 60 * 60;
const PEM_LABEL_CERTIFICATE: &str = "CERTIFICATE";

/// What an issued certificate may be used for, written as its extended key usage.
///
/// rustls checks it: a server refuses a client certificate without client use, and a client
/// refuses a server certificate without server use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// Store peers, which both accept and open connections to each other.
    Both,
}

/// The contents of a certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    /// `CN=`: the user name for Kubernetes, the member name for store peers.
    pub common_name: String,
    /// `O=` attributes, in order; Kubernetes reads each as a group the holder belongs to.
    pub organizations: Vec<String>,
    /// DNS subject alternative names a server certificate is valid for.
    pub dns_names: Vec<String>,
    /// IP subject alternative names a server certificate is valid for.
    pub ip_addresses: Vec<IpAddr>,
    pub usage: Usage,
    /// In `1..=ISSUED_VALIDITY_DAYS_MAX`.
    pub validity_days: u32,
}

/// A certificate issued by the cluster CA, with its private key, both PEM encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub cert_pem: String,
    /// PKCS#8 private key.
    pub key_pem: String,
}

/// The cluster's certificate authority: its certificate and the key that signs with it.
pub struct ClusterCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    /// The CA's subject exactly as encoded in its certificate. Issued certificates carry
    /// these bytes as their issuer, because verifiers chain certificates by comparing them.
    subject: Vec<u8>,
}

/// Why a certificate and key cannot form a CA; the caller knows which files they came from.
enum Unusable {
    MalformedCertificate,
    KeyMismatch,
}

impl ClusterCa {
    /// Creates a CA for `cluster_name` with a new ECDSA P-256 key, valid from now for
    /// [`CA_VALIDITY_DAYS`].
    pub fn generate(cluster_name: &str) -> Result<Self, PkiError> {
        Self::generate_at(cluster_name, SystemTime::now())
    }

    /// [`generate`](Self::generate) with the clock reading passed in.
    pub fn generate_at(cluster_name: &str, now: SystemTime) -> Result<Self, PkiError> {
        let key = generate_key()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, format!("shoal-ca {cluster_name}"));
        // Path length zero: the cluster CA signs only end-entity certificates, so a
        // certificate it issued can never act as a CA even if mis-issued.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params, now, CA_VALIDITY_DAYS);
        let cert = params.self_signed(&key).map_err(|source| PkiError::Generate { source })?;
        match Self::from_parts(cert.der().to_vec(), key) {
            Ok(ca) => Ok(ca),
            Err(_) => panic!("rcgen produced a CA certificate that shoal-pki cannot read back"),
        }
    }

    /// Reads a CA from `dir`/[`CA_CERT_FILE`] and `dir`/[`CA_KEY_FILE`], checking that the
    /// key belongs to the certificate.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_text = files::read_pem_text(&cert_path)?;
        let cert_der = files::parse_certificates(&cert_text, &cert_path)?.swap_remove(0);
        let key_text = files::read_pem_text(&key_path)?;
        let key_der = files::parse_private_key(&key_text, &key_path)?;
        let key = KeyPair::try_from(&key_der)
            .map_err(|source| PkiError::PrivateKey { path: key_path.clone(), source })?;
        Self::from_parts(cert_der.to_vec(), key).map_err(|unusable| match unusable {
            Unusable::MalformedCertificate => PkiError::MalformedCertificate { path: cert_path },
            Unusable::KeyMismatch => PkiError::KeyMismatch { cert_path, key_path },
        })
    }

    /// Writes the CA to `dir`/[`CA_CERT_FILE`] and `dir`/[`CA_KEY_FILE`] (mode 0600),
    /// replacing any files already there.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        let key_pem = self.issuer.key().serialize_pem();
        files::write_file(&dir.join(CA_KEY_FILE), key_pem.as_bytes(), KEY_FILE_MODE)?;
        files::write_file(&dir.join(CA_CERT_FILE), self.cert_pem.as_bytes(), CERT_FILE_MODE)
    }

    /// The CA certificate, PEM encoded: what peers put in their trust store.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER encoded.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Issues a certificate with a new ECDSA P-256 key, valid from now.
    pub fn issue(&self, request: &IssueRequest) -> Result<IssuedCert, PkiError> {
        self.issue_at(request, SystemTime::now())
    }

    /// [`issue`](Self::issue) with the clock reading passed in.
    pub fn issue_at(&self, request: &IssueRequest, now: SystemTime) -> Result<IssuedCert, PkiError> {
        check_request(request)?;
        let key = generate_key()?;
        let cert_pem = self.certify(request, &key, now)?;
        Ok(IssuedCert { cert_pem, key_pem: key.serialize_pem() })
    }

    /// Issues a certificate, PEM encoded, for a key whose private half stays with its owner
    /// (a joining node's), valid from now.
    pub fn issue_for_key(
        &self,
        request: &IssueRequest,
        public_key: &P256PublicKey,
    ) -> Result<String, PkiError> {
        self.issue_for_key_at(request, public_key, SystemTime::now())
    }

    /// [`issue_for_key`](Self::issue_for_key) with the clock reading passed in.
    pub fn issue_for_key_at(
        &self,
        request: &IssueRequest,
        public_key: &P256PublicKey,
        now: SystemTime,
    ) -> Result<String, PkiError> {
        check_request(request)?;
        self.certify(request, public_key, now)
    }

    /// The certificate for `public_key` that `request` describes, PEM encoded.
    fn certify(
        &self,
        request: &IssueRequest,
        public_key: &impl PublicKeyData,
        now: SystemTime,
    ) -> Result<String, PkiError> {
        let params = leaf_params(request, now)?;
        let draft =
            params.signed_by(public_key, &self.issuer).map_err(|source| PkiError::Generate { source })?;
        let cert_der = self.sign_with_names(draft.der(), &subject_name(request))?;
        Ok(files::encode_pem(PEM_LABEL_CERTIFICATE, &cert_der))
    }

    /// Turns rcgen's draft, whose names are placeholders, into the certificate to hand out:
    /// the CA's exact subject as issuer, `subject` as subject, signed again by the CA.
    ///
    /// rcgen writes everything else (serial, validity, key, extensions) and stays the only
    /// code that builds certificates; this swaps two fields it cannot express.
    fn sign_with_names(&self, draft: &[u8], subject: &[u8]) -> Result<Vec<u8>, PkiError> {
        let Some(view) = CertificateView::parse(draft) else {
            panic!("rcgen produced a certificate that shoal-pki cannot read back");
        };
        let tbs = view.tbs_with_names(&self.subject, subject);
        let signature = self.issuer.key().sign(&tbs).map_err(|source| PkiError::Generate { source })?;
        Ok(der::encode_certificate(&tbs, view.signature_algorithm().encoded, &signature))
    }

    fn from_parts(cert_der: Vec<u8>, key: KeyPair) -> Result<Self, Unusable> {
        let view = CertificateView::parse(&cert_der).ok_or(Unusable::MalformedCertificate)?;
        if view.subject_public_key_info().encoded != key.subject_public_key_info() {
            return Err(Unusable::KeyMismatch);
        }
        let mut params = CertificateParams::default();
        // Issued certificates name their signer's key the way the CA certificate does;
        // without a subjectKeyIdentifier, rcgen's default derives one from the key.
        if let Some(key_identifier) = view.subject_key_identifier() {
            params.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier.to_vec());
        }
        // rcgen writes this name as the issuer of drafts only; `sign_with_names` replaces it.
        params.distinguished_name = DistinguishedName::new();
        let subject = view.subject().encoded.to_vec();
        let cert_pem = files::encode_pem(PEM_LABEL_CERTIFICATE, &cert_der);
        Ok(Self { issuer: Issuer::new(params, key), cert_der: cert_der.into(), cert_pem, subject })
    }
}

impl fmt::Debug for ClusterCa {
    /// Names the CA without printing its key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let common_name = peer_identity(&self.cert_der).map(|identity| identity.common_name);
        f.debug_struct("ClusterCa").field("common_name", &common_name).finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// Writes `dir`/`<stem>.crt` and `dir`/`<stem>.key` (mode 0600), replacing any files there.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<(), PkiError> {
        files::write_file(&dir.join(format!("{stem}.key")), self.key_pem.as_bytes(), KEY_FILE_MODE)?;
        files::write_file(&dir.join(format!("{stem}.crt")), self.cert_pem.as_bytes(), CERT_FILE_MODE)
    }

    /// Reads `dir`/`<stem>.crt` and `dir`/`<stem>.key`, checking that they hold a certificate
    /// and a private key.
    pub fn load(dir: &Path, stem: &str) -> Result<Self, PkiError> {
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        let cert_pem = files::read_pem_text(&cert_path)?;
        files::parse_certificates(&cert_pem, &cert_path)?;
        let key_pem = files::read_pem_text(&key_path)?;
        files::parse_private_key(&key_pem, &key_path)?;
        Ok(Self { cert_pem, key_pem })
    }
}

impl fmt::Debug for IssuedCert {
    /// Shows the certificate but never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl Usage {
    fn extended_key_usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Both => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        }
    }
}

/// Refuses requests no certificate should be issued for.
fn check_request(request: &IssueRequest) -> Result<(), PkiError> {
    if request.common_name.is_empty() {
        return Err(PkiError::EmptyCommonName);
    }
    if !(1..=ISSUED_VALIDITY_DAYS_MAX).contains(&request.validity_days) {
        return Err(PkiError::ValidityOutOfRange {
            validity_days: request.validity_days,
            max_days: ISSUED_VALIDITY_DAYS_MAX,
        });
    }
    Ok(())
}

fn generate_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| PkiError::Generate { source })
}

/// Everything of an issued certificate but its names, which rcgen leaves as placeholders.
fn leaf_params(request: &IssueRequest, now: SystemTime) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    // `sign_with_names` replaces this subject. It must still not be empty: rcgen marks the
    // subjectAltName extension critical for an empty subject, as RFC 5280 asks.
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, request.common_name.as_str());
    for name in &request.dns_names {
        let dns_name = name
            .as_str()
            .try_into()
            .map_err(|source| PkiError::InvalidDnsName { name: name.clone(), source })?;
        params.subject_alt_names.push(SanType::DnsName(dns_name));
    }
    params.subject_alt_names.extend(request.ip_addresses.iter().copied().map(SanType::IpAddress));
    params.is_ca = IsCa::ExplicitNoCa;
    // ECDSA keys only sign; key encipherment is for RSA key transport.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = request.usage.extended_key_usages();
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now, request.validity_days);
    Ok(params)
}

/// The subject of an issued certificate: each organization, then the common name, the
/// order Go's crypto/x509 (and so kubeadm) writes them in.
fn subject_name(request: &IssueRequest) -> Vec<u8> {
    let organizations =
        request.organizations.iter().map(|organization| (der::OID_ORGANIZATION, organization.as_str()));
    let attributes: Vec<(&[u8], &str)> =
        organizations.chain([(der::OID_COMMON_NAME, request.common_name.as_str())]).collect();
    der::encode_name(&attributes)
}

/// Sets the validity window to start [`CLOCK_SKEW_ALLOWANCE`] before `now` and end
/// `validity_days` after it, in whole seconds as X.509 records time.
fn set_validity(params: &mut CertificateParams, now: SystemTime, validity_days: u32) {
    let since_epoch = now.duration_since(UNIX_EPOCH).expect("the clock reads after 1970");
    let since_epoch = Duration::from_secs(since_epoch.as_secs());
    let validity = Duration::from_secs(u64::from(validity_days) * SECONDS_PER_DAY);
    // rcgen's times are `time::OffsetDateTime`; reaching them from the epoch spares this
    // crate a direct dependency on `time`.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + since_epoch.saturating_sub(CLOCK_SKEW_ALLOWANCE);
    params.not_after = epoch + since_epoch + validity;
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;

    use super::*;

    // Verifiers chain a certificate to its CA by comparing the certificate's issuer bytes
    // with the CA's subject bytes, so the spliced issuer must match them exactly, whether
    // the CA was just generated or read back from PEM.
    #[test]
    fn issued_certificates_name_their_ca_byte_for_byte() {
        let generated = ClusterCa::generate("alpha").expect("generate");
        let key = KeyPair::from_pem(&generated.issuer.key().serialize_pem()).expect("key");
        let reloaded = ClusterCa::from_parts(generated.cert_der.to_vec(), key).ok().expect("reload");
        let ca_view = CertificateView::parse(&generated.cert_der).expect("CA parses");
        for ca in [&generated, &reloaded] {
            let request = IssueRequest {
                common_name: "admin".to_owned(),
                organizations: vec!["system:masters".to_owned()],
                dns_names: vec![],
                ip_addresses: vec![],
                usage: Usage::Client,
                validity_days: 1,
            };
            let issued = ca.issue(&request).expect("issue");
            let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("PEM");
            let view = CertificateView::parse(&der).expect("issued parses");
            assert_eq!(view.issuer().encoded, ca_view.subject().encoded);
        }
    }
}
