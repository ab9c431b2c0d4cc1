//! Keys that never leave the machine that made them.
//!
//! A joining node generates its own key pair ([`NodeKey`]) and sends the server only the
//! public half, as the raw uncompressed P-256 point. The server checks that point
//! ([`P256PublicKey::from_point`]) and certifies it (`ClusterCa::issue_for_key`); the private
//! key is written to the node's disk and nowhere else.

use std::fmt;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm};
use ring::agreement;
use ring::rand::SystemRandom;

use crate::PkiError;

/// Bytes of an uncompressed P-256 point: the tag, then X and Y of 32 bytes each (SEC 1 §2.3.3).
pub const P256_POINT_BYTES: usize = 65;
/// The first byte of an uncompressed point; compressed points (0x02, 0x03) are not accepted.
const UNCOMPRESSED_POINT_TAG: u8 = 0x04;

/// A P-256 public key: an uncompressed point known to lie on the curve.
#[derive(Clone, PartialEq, Eq)]
pub struct P256PublicKey {
    point: [u8; P256_POINT_BYTES],
}

/// A P-256 key pair generated on this machine, for a node's own credential.
pub struct NodeKey {
    key: KeyPair,
}

impl P256PublicKey {
    /// Reads `0x04 || X || Y`, refusing any other length or tag and any point off the curve.
    pub fn from_point(bytes: &[u8]) -> Result<Self, PkiError> {
        let shape_error = || PkiError::PublicKeyShape { length: bytes.len() };
        let point: [u8; P256_POINT_BYTES] = bytes.try_into().map_err(|_| shape_error())?;
        if point[0] != UNCOMPRESSED_POINT_TAG {
            return Err(shape_error());
        }
        // rcgen copies the point into the certificate as given; nothing in signing looks at
        // it. ring validates a peer's point (on the curve, not the point at infinity) before
        // any key agreement, so one agreement with a throwaway key is the check.
        let random = SystemRandom::new();
        let throwaway = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &random)
            .map_err(|_| PkiError::Random)?;
        let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &point);
        agreement::agree_ephemeral(throwaway, &peer, |_| ()).map_err(|_| PkiError::PublicKeyNotOnCurve)?;
        Ok(Self { point })
    }

    /// The uncompressed point, as a joining node sends it.
    pub fn point(&self) -> &[u8] {
        &self.point
    }
}

impl PublicKeyData for P256PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl fmt::Debug for P256PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.point.iter().map(|byte| format!("{byte:02x}")).collect();
        f.debug_tuple("P256PublicKey").field(&hex).finish()
    }
}

impl NodeKey {
    /// A new random P-256 key pair.
    pub fn generate() -> Result<Self, PkiError> {
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| PkiError::Generate { source })?;
        Ok(Self { key })
    }

    /// The public half, to be certified.
    pub fn public_key(&self) -> P256PublicKey {
        let point = self.key.public_key_raw().try_into().unwrap_or_else(|_| {
            panic!("rcgen generated a P-256 key whose public point is not {P256_POINT_BYTES} bytes")
        });
        P256PublicKey { point }
    }

    /// The private key as PKCS#8 PEM, to be saved beside its certificate.
    pub fn private_key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

impl fmt::Debug for NodeKey {
    /// Shows the public half only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey").field("public_key", &self.public_key()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A generated key's point is accepted; wrong lengths, a compressed tag and points off the
    // curve (all zeros, a valid X with Y flipped by one bit) are refused, each for its reason.
    #[test]
    fn points_are_checked() {
        let point = NodeKey::generate().expect("generate").public_key().point().to_vec();
        assert_eq!(P256PublicKey::from_point(&point).expect("a generated point").point(), &point[..]);

        let check_shape = |bytes: &[u8]| {
            assert!(
                matches!(P256PublicKey::from_point(bytes), Err(PkiError::PublicKeyShape { length }) if length == bytes.len()),
                "{bytes:02x?}"
            );
        };
        check_shape(&point[..64]);
        check_shape(&[point.as_slice(), &[0]].concat());
        check_shape(&[]);
        let mut compressed = point.clone();
        compressed[0] = 0x02;
        check_shape(&compressed);

        let off_curve = |bytes: &[u8]| {
            assert!(
                matches!(P256PublicKey::from_point(bytes), Err(PkiError::PublicKeyNotOnCurve)),
                "{bytes:02x?}"
            );
        };
        let mut zeros = [0u8; P256_POINT_BYTES];
        zeros[0] = UNCOMPRESSED_POINT_TAG;
        off_curve(&zeros);
        let mut flipped = point.clone();
        flipped[P256_POINT_BYTES - 1] ^= 1;
        off_curve(&flipped);
    }
}
