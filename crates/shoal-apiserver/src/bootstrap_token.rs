//! Bootstrap tokens, as Kubernetes has them: short-lived bearer tokens that let a new node
//! ask for its own credential, and nothing else.
//!
//! A token is `<id>.<secret>` (6 and 16 characters of `[a-z0-9]`), stored as the Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` with data
//! `token-id`, `token-secret`, `expiration` (RFC 3339), `usage-bootstrap-authentication` and
//! `description`. The id is public (it names the Secret); the secret is compared in constant
//! time. A valid token authenticates as `system:bootstrap:<id>` in `system:bootstrappers`,
//! a group authorized only to join (`auth::may_join`).
//!
//! Everything here is pure: `Api` reads the Secret and passes it in with the clock reading.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use ring::rand::SystemRandom;
use serde_json::Value;

use crate::auth::{BOOTSTRAPPERS_GROUP, User};

/// Where bootstrap token Secrets live.
pub const NAMESPACE: &str = "kube-system";
/// A token's Secret is this prefix followed by the token id.
pub const SECRET_NAME_PREFIX: &str = "bootstrap-token-";
/// The Secret type that marks a bootstrap token.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// A token's user is this prefix followed by the token id.
pub const USER_PREFIX: &str = "system:bootstrap:";
pub const TOKEN_ID_LENGTH: usize = 6;
pub const TOKEN_SECRET_LENGTH: usize = 16;

/// The keys of a token Secret's data.
pub const DATA_TOKEN_ID: &str = "token-id";
pub const DATA_TOKEN_SECRET: &str = "token-secret";
pub const DATA_EXPIRATION: &str = "expiration";
pub const DATA_USAGE_AUTHENTICATION: &str = "usage-bootstrap-authentication";
pub const DATA_DESCRIPTION: &str = "description";

/// A token of the right shape; whether it is valid is for `authenticate` to say.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

/// Why a stored Secret does not authenticate a token. Logged on the server; the client only
/// ever sees 401, as for any other bad credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the secret is being deleted")]
    Deleting,
    #[error("the secret is not of type {SECRET_TYPE}")]
    WrongType,
    #[error("the token secret does not match")]
    SecretMismatch,
    #[error("the secret's {DATA_TOKEN_ID} does not match its name")]
    IdMismatch,
    #[error("the token expired at {expiration}")]
    Expired { expiration: String },
    /// Kubernetes treats an expiration it cannot read as passed, and so does shoal.
    #[error("the expiration {expiration:?} is not an RFC 3339 time")]
    UnreadableExpiration { expiration: String },
    #[error("the token is not marked for authentication")]
    NotForAuthentication,
}

impl BootstrapToken {
    /// `<id>.<secret>` matching `^[a-z0-9]{6}\.[a-z0-9]{16}$`, or `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let (id, secret) = text.split_once('.')?;
        let well_formed = |part: &str, length: usize| {
            part.len() == length
                && part.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
        };
        (well_formed(id, TOKEN_ID_LENGTH) && well_formed(secret, TOKEN_SECRET_LENGTH))
            .then(|| Self { id: id.to_owned(), secret: secret.to_owned() })
    }

    /// The token in an `Authorization: Bearer <token>` header value, if it has the shape.
    pub fn from_authorization(authorization: &str) -> Option<Self> {
        let token =
            authorization.strip_prefix("Bearer ").or_else(|| authorization.strip_prefix("bearer "))?;
        Self::parse(token.trim())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The name of the Secret that stores this token, in [`NAMESPACE`].
    pub fn secret_name(&self) -> String {
        format!("{SECRET_NAME_PREFIX}{}", self.id)
    }
}

impl fmt::Display for BootstrapToken {
    /// The token as a client presents it; this prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for BootstrapToken {
    /// Shows the id only: debug output ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapToken").field("id", &self.id).finish_non_exhaustive()
    }
}

/// The user `token` authenticates as, given its stored Secret (the object as the API returns
/// it, `data` base64-encoded) and the time now. The checks and their order are upstream's.
pub fn authenticate(token: &BootstrapToken, secret: &Value, now: jiff::Timestamp) -> Result<User, Rejection> {
    if secret.pointer("/metadata/deletionTimestamp").is_some_and(|stamp| !stamp.is_null()) {
        return Err(Rejection::Deleting);
    }
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return Err(Rejection::WrongType);
    }
    let stored_secret = data(secret, DATA_TOKEN_SECRET).unwrap_or_default();
    if !secrets_equal(stored_secret.as_bytes(), token.secret.as_bytes()) {
        return Err(Rejection::SecretMismatch);
    }
    if data(secret, DATA_TOKEN_ID).as_deref() != Some(token.id.as_str()) {
        return Err(Rejection::IdMismatch);
    }
    if let Some(expiration) = data(secret, DATA_EXPIRATION) {
        match expiration.parse::<jiff::Timestamp>() {
            Ok(at) if at > now => {}
            Ok(_) => return Err(Rejection::Expired { expiration }),
            Err(_) => return Err(Rejection::UnreadableExpiration { expiration }),
        }
    }
    if data(secret, DATA_USAGE_AUTHENTICATION).as_deref() != Some("true") {
        return Err(Rejection::NotForAuthentication);
    }
    // Only the bootstrappers group: shoal gives no user the implicit `system:authenticated`.
    Ok(User { name: format!("{USER_PREFIX}{}", token.id), groups: vec![BOOTSTRAPPERS_GROUP.to_owned()] })
}

/// One value of a Secret's `data`, decoded; `None` if missing or not base64 of UTF-8.
fn data(secret: &Value, key: &str) -> Option<String> {
    let encoded = secret.get("data")?.get(key)?.as_str()?;
    String::from_utf8(STANDARD.decode(encoded).ok()?).ok()
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
///
/// Both sides are MACed under a key drawn for this comparison alone, and ring compares the
/// tags in constant time: an attacker timing the answer learns nothing about the stored
/// secret, since they cannot predict the tag of anything they send. (ring's own
/// `constant_time` module is deprecated.)
fn secrets_equal(stored: &[u8], presented: &[u8]) -> bool {
    let Ok(key) = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()) else {
        return false;
    };
    let tag = hmac::sign(&key, stored);
    hmac::verify(&key, presented, tag.as_ref()).is_ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ID: &str = "abcdef";
    const SECRET: &str = "0123456789abcdef";

    fn token() -> BootstrapToken {
        BootstrapToken::parse(&format!("{ID}.{SECRET}")).expect("a well-formed token")
    }

    /// A token Secret as the API returns it, with `data` given in the clear.
    fn secret(data: &[(&str, &str)]) -> Value {
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(key, value)| ((*key).to_owned(), Value::from(STANDARD.encode(value))))
            .collect();
        json!({
            "metadata": {"name": format!("{SECRET_NAME_PREFIX}{ID}"), "namespace": NAMESPACE},
            "type": SECRET_TYPE,
            "data": data,
        })
    }

    fn valid_data() -> Vec<(&'static str, &'static str)> {
        vec![
            (DATA_TOKEN_ID, ID),
            (DATA_TOKEN_SECRET, SECRET),
            (DATA_EXPIRATION, "2030-01-01T00:00:00Z"),
            (DATA_USAGE_AUTHENTICATION, "true"),
            (DATA_DESCRIPTION, "for n1"),
        ]
    }

    fn now() -> jiff::Timestamp {
        "2029-06-01T00:00:00Z".parse().expect("time")
    }

    fn check(secret: &Value, now: jiff::Timestamp, expected: Result<(), Rejection>) {
        let user =
            User { name: format!("system:bootstrap:{ID}"), groups: vec![BOOTSTRAPPERS_GROUP.to_owned()] };
        assert_eq!(authenticate(&token(), secret, now), expected.map(|()| user), "{secret}");
    }

    // Exactly `^[a-z0-9]{6}\.[a-z0-9]{16}$` parses, bare or after `Bearer `; the id names the
    // Secret and the debug form hides the secret.
    #[test]
    fn token_shape() {
        let token = token();
        assert_eq!((token.id(), token.secret()), (ID, SECRET));
        assert_eq!(token.secret_name(), "bootstrap-token-abcdef");
        assert_eq!(token.to_string(), format!("{ID}.{SECRET}"));
        assert!(!format!("{token:?}").contains(SECRET));
        assert_eq!(BootstrapToken::from_authorization(&format!("Bearer {ID}.{SECRET}")), Some(token));
        for bad in [
            "",
            "abcdef",
            "abcdef.",
            "abcdef0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdefg.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef0",
            "ABCDEF.0123456789abcdef",
            "abcdef.0123456789ABCDEF",
            "abc-ef.0123456789abcdef",
            "abcdef.0123456789abcdef.x",
            "abcdef:0123456789abcdef",
        ] {
            assert_eq!(BootstrapToken::parse(bad), None, "{bad:?}");
        }
        assert_eq!(BootstrapToken::from_authorization(&format!("Basic {ID}.{SECRET}")), None);
    }

    // A valid, unexpired token for authentication is the bootstrap user; each thing upstream
    // checks, wrong on its own, is refused for its reason.
    #[test]
    fn authentication() {
        check(&secret(&valid_data()), now(), Ok(()));

        let without =
            |key: &str| secret(&valid_data().into_iter().filter(|(k, _)| *k != key).collect::<Vec<_>>());
        let with = |key: &str, value: &str| {
            let mut data = valid_data();
            data.retain(|(k, _)| *k != key);
            let mut secret = secret(&data);
            secret["data"][key] = Value::from(STANDARD.encode(value));
            secret
        };
        // No expiration: valid until deleted, as upstream.
        check(&without(DATA_EXPIRATION), now(), Ok(()));
        check(&with(DATA_TOKEN_SECRET, "0123456789abcdee"), now(), Err(Rejection::SecretMismatch));
        check(&with(DATA_TOKEN_SECRET, "0123456789abcdef0"), now(), Err(Rejection::SecretMismatch));
        check(&with(DATA_TOKEN_SECRET, ""), now(), Err(Rejection::SecretMismatch));
        check(&without(DATA_TOKEN_SECRET), now(), Err(Rejection::SecretMismatch));
        check(&with(DATA_TOKEN_ID, "abcdeg"), now(), Err(Rejection::IdMismatch));
        check(&without(DATA_TOKEN_ID), now(), Err(Rejection::IdMismatch));
        check(&with(DATA_USAGE_AUTHENTICATION, "false"), now(), Err(Rejection::NotForAuthentication));
        check(&without(DATA_USAGE_AUTHENTICATION), now(), Err(Rejection::NotForAuthentication));
        check(
            &with(DATA_EXPIRATION, "tomorrow"),
            now(),
            Err(Rejection::UnreadableExpiration { expiration: "tomorrow".into() }),
        );

        let mut wrong_type = secret(&valid_data());
        wrong_type["type"] = Value::from("Opaque");
        check(&wrong_type, now(), Err(Rejection::WrongType));
        let mut deleting = secret(&valid_data());
        deleting["metadata"]["deletionTimestamp"] = Value::from("2029-05-01T00:00:00Z");
        check(&deleting, now(), Err(Rejection::Deleting));
        let mut not_base64 = secret(&valid_data());
        not_base64["data"][DATA_TOKEN_SECRET] = Value::from(SECRET);
        check(&not_base64, now(), Err(Rejection::SecretMismatch));
    }

    // A token is valid up to its expiration and refused from that instant on; offsets other
    // than Z are read as RFC 3339 allows.
    #[test]
    fn expiry() {
        let at = |text: &str| text.parse::<jiff::Timestamp>().expect("time");
        let expired = || Err(Rejection::Expired { expiration: "2030-01-01T00:00:00Z".into() });
        let valid = secret(&valid_data());
        check(&valid, at("2029-12-31T23:59:59Z"), Ok(()));
        check(&valid, at("2030-01-01T00:00:00Z"), expired());
        check(&valid, at("2031-01-01T00:00:00Z"), expired());
        let mut offset = valid.clone();
        offset["data"][DATA_EXPIRATION] = Value::from(STANDARD.encode("2030-01-01T02:00:00+02:00"));
        check(&offset, at("2029-12-31T23:59:59Z"), Ok(()));
        assert!(authenticate(&token(), &offset, at("2030-01-01T00:00:00Z")).is_err());
    }

    // The comparison answers equality exactly: equal secrets match; a different byte at
    // either end, a prefix, an extension and the empty secret do not.
    #[test]
    fn constant_time_comparison() {
        let stored = SECRET.as_bytes();
        assert!(secrets_equal(stored, stored));
        assert!(!secrets_equal(stored, b"1123456789abcdef"));
        assert!(!secrets_equal(stored, b"0123456789abcdee"));
        assert!(!secrets_equal(stored, &stored[..15]));
        assert!(!secrets_equal(stored, b"0123456789abcdef0"));
        assert!(!secrets_equal(stored, b""));
        assert!(!secrets_equal(b"", stored));
        assert!(secrets_equal(b"", b""));
    }
}
