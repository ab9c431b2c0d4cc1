//! Encryption of Secrets at rest: AES-256-GCM with keys generated at init.
//!
//! A sealed value is `shoal:enc:aesgcm:v1:<key name>:` followed by a 12-byte random nonce and
//! the ciphertext with its tag, as Kubernetes' aesgcm provider lays it out. The key file holds
//! one key per line, `<name> <base64 of 32 bytes>`; the first line seals, every line opens.
//! Rotation: put a new key on the first line on every server, restart them, rewrite every
//! Secret (`kubectl get secrets -A -o json | kubectl replace --validate=false -f -`: shoal serves no
//! OpenAPI v2, which kubectl needs to validate a List), then drop the old line.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Marks a sealed value; anything else in the store is plaintext from before encryption.
const SEALED_PREFIX: &[u8] = b"shoal:enc:aesgcm:v1:";
const KEY_BYTES: usize = 32;
/// A key name is short and cannot contain the `:` that ends it in a sealed value.
const KEY_NAME_BYTES_MAX: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretBoxError {
    #[error("reading the encryption key file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the encryption key file {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line} of the encryption key file is not `<name> <base64 of 32 bytes>`")]
    BadKeyLine { line: usize },
    #[error("the encryption key file has no keys")]
    NoKeys,
    #[error("the sealed value names key {name:?}, which is not in the key file")]
    UnknownKey { name: String },
    #[error("the sealed value is truncated or malformed")]
    Malformed,
    #[error("the sealed value fails authentication (wrong key or tampered data)")]
    Unauthentic,
}

/// Seals and opens Secret values; cheap to clone.
#[derive(Clone)]
pub struct SecretBox {
    keys: Arc<Vec<(String, LessSafeKey)>>,
}

impl SecretBox {
    /// Loads the keys from `path`, generating a first key there if the file does not exist.
    pub fn load_or_generate(path: &Path) -> Result<Self, SecretBoxError> {
        let display = || path.display().to_string();
        if !path.exists() {
            let mut key = [0u8; KEY_BYTES];
            SystemRandom::new().fill(&mut key).expect("the system random source works");
            let line = format!("key1 {}\n", STANDARD.encode(key));
            write_private(path, &line).map_err(|source| SecretBoxError::Write { path: display(), source })?;
        }
        let text = std::fs::read_to_string(path)
            .map_err(|source| SecretBoxError::Read { path: display(), source })?;
        Self::parse(&text)
    }

    /// Parses the key file's text.
    pub fn parse(text: &str) -> Result<Self, SecretBoxError> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
            let bad = || SecretBoxError::BadKeyLine { line: index + 1 };
            let (name, encoded) = line.trim().split_once(' ').ok_or_else(bad)?;
            if name.is_empty() || name.len() > KEY_NAME_BYTES_MAX || name.contains(':') {
                return Err(bad());
            }
            let bytes = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
            let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| bad())?;
            keys.push((name.to_owned(), LessSafeKey::new(key)));
        }
        if keys.is_empty() {
            return Err(SecretBoxError::NoKeys);
        }
        Ok(Self { keys: Arc::new(keys) })
    }

    /// Encrypts `plaintext` with the first key.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let (name, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("the system random source works");
        let mut in_out = plaintext.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut in_out)
            .expect("AES-GCM seals any input shorter than 64 GiB");
        let mut sealed = Vec::with_capacity(SEALED_PREFIX.len() + name.len() + 1 + NONCE_LEN + in_out.len());
        sealed.extend_from_slice(SEALED_PREFIX);
        sealed.extend_from_slice(name.as_bytes());
        sealed.push(b':');
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&in_out);
        sealed
    }

    /// Decrypts a sealed value; a value without the sealed prefix is returned as it is.
    pub fn open(&self, stored: &[u8]) -> Result<Vec<u8>, SecretBoxError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_vec());
        };
        let colon = rest.iter().position(|&byte| byte == b':').ok_or(SecretBoxError::Malformed)?;
        let name = String::from_utf8_lossy(&rest[..colon]).into_owned();
        let rest = &rest[colon + 1..];
        if rest.len() < NONCE_LEN {
            return Err(SecretBoxError::Malformed);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let (_, key) = self
            .keys
            .iter()
            .find(|(key_name, _)| *key_name == name)
            .ok_or(SecretBoxError::UnknownKey { name })?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretBoxError::Malformed)?;
        let mut in_out = ciphertext.to_vec();
        let plaintext =
            key.open_in_place(nonce, Aad::empty(), &mut in_out).map_err(|_| SecretBoxError::Unauthentic)?;
        Ok(plaintext.to_vec())
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "a AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const KEY_B: &str = "b AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    // Sealing hides the plaintext, opening restores it, and after a rotation (new key first)
    // values sealed with the old key still open.
    #[test]
    fn seal_open_and_rotate() {
        let old = SecretBox::parse(KEY_A).expect("key a");
        let sealed = old.seal(b"{\"data\":{\"password\":\"hunter2\"}}");
        assert!(!sealed.windows(7).any(|window| window == b"hunter2"));
        assert_eq!(old.open(&sealed).expect("opens"), b"{\"data\":{\"password\":\"hunter2\"}}");
        let rotated = SecretBox::parse(&format!("{KEY_B}\n{KEY_A}\n")).expect("two keys");
        assert_eq!(
            rotated.open(&sealed).expect("old key still opens"),
            b"{\"data\":{\"password\":\"hunter2\"}}"
        );
        assert!(rotated.seal(b"x").starts_with(b"shoal:enc:aesgcm:v1:b:"));
    }

    // Tampering, truncation, unknown keys and bad key files are errors, never panics.
    #[test]
    fn bad_input_is_an_error() {
        let secrets = SecretBox::parse(KEY_A).expect("key a");
        let mut sealed = secrets.seal(b"value");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(secrets.open(&sealed), Err(SecretBoxError::Unauthentic)));
        assert!(matches!(secrets.open(b"shoal:enc:aesgcm:v1:a:short"), Err(SecretBoxError::Malformed)));
        assert!(matches!(
            secrets.open(b"shoal:enc:aesgcm:v1:zz:123456789012x"),
            Err(SecretBoxError::UnknownKey { .. })
        ));
        assert!(matches!(secrets.open(b"shoal:enc:aesgcm:v1:"), Err(SecretBoxError::Malformed)));
        assert_eq!(secrets.open(b"{\"plain\":1}").expect("plaintext passes"), b"{\"plain\":1}");
        for file in ["", "k notbase64", "k AAAA", "a:b AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="] {
            assert!(SecretBox::parse(file).is_err(), "{file:?}");
        }
    }

    // A missing key file is generated once, private to its owner, and reused afterwards.
    #[test]
    fn generates_a_key_file_once() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("encryption.key");
        let first = SecretBox::load_or_generate(&path).expect("generated");
        let mode = std::fs::metadata(&path).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = SecretBox::load_or_generate(&path).expect("reloaded");
        assert_eq!(second.open(&first.seal(b"same key")).expect("opens"), b"same key");
    }
}
