//! `shoal token create`: a bootstrap token with which a new node joins the cluster.
//!
//! The token is a Secret in `kube-system` in Kubernetes' bootstrap token format (see
//! `shoal_apiserver::bootstrap_token`), created through the API as the admin. The command
//! prints the token, then the `shoal agent` line that joins a node with it; that line pins the
//! cluster CA by the hash of the certificate the server itself serves at `/shoal/v1/ca`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rand::Rng as _;
use shoal_apiserver::bootstrap_token::{self, BootstrapToken};

/// The characters of a token's id and secret (`[a-z0-9]`).
const TOKEN_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Tries at an unused token id. Ids are 6 random characters (2·10⁹ of them), so a collision
/// is rare and two in a row means something else is wrong.
const TOKEN_ID_ATTEMPTS: u32 = 3;

#[derive(Args, Clone, Debug)]
pub struct TokenCreateArgs {
    /// How long the token can be used to join, e.g. 24h, 90m, 168h; 0 for until it is deleted.
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// A note stored with the token, e.g. which node it is for.
    #[arg(long, default_value = "")]
    pub description: String,
    /// The admin's kubeconfig [default: $KUBECONFIG, else ~/.shoal/up/kubeconfig].
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

pub async fn run_create(args: TokenCreateArgs) -> anyhow::Result<()> {
    let config = admin_config(args.kubeconfig).await?;
    let server = config.cluster_url.to_string().trim_end_matches('/').to_owned();
    let client = kube::Client::try_from(config).context("building the API client")?;
    let token = create_join_token(&client, args.ttl, &args.description).await?;
    let request = http::Request::get(shoal_apiserver::join::CA_PATH).body(Vec::new())?;
    let ca_pem = client.request_text(request).await.context("reading the cluster CA from the server")?;
    let hash = crate::join::ca_cert_hash(&ca_pem)?;
    println!("{token}");
    println!("shoal agent --server {server} --token {token} --ca-cert-hash {hash}");
    Ok(())
}

/// Creates a bootstrap token valid for `ttl` (for ever if zero) and returns it,
/// `<id>.<secret>`. `client` must be allowed to create Secrets in `kube-system`.
pub async fn create_join_token(
    client: &kube::Client,
    ttl: Duration,
    description: &str,
) -> anyhow::Result<String> {
    let expiration = if ttl.is_zero() {
        None
    } else {
        let ttl = jiff::SignedDuration::try_from(ttl).context("the token's lifetime is too long")?;
        let expiration =
            jiff::Timestamp::now().checked_add(ttl).context("the token's lifetime is too long")?;
        Some(shoal_apiserver::meta::timestamp_rfc3339(expiration))
    };
    let secrets = Api::<Secret>::namespaced(client.clone(), bootstrap_token::NAMESPACE);
    let mut attempt = 1;
    loop {
        let token = random_token();
        let secret = token_secret(&token, expiration.as_deref(), description);
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => return Ok(token.to_string()),
            Err(kube::Error::Api(status)) if status.code == 409 && attempt < TOKEN_ID_ATTEMPTS => {
                attempt += 1
            }
            Err(error) => return Err(error).context("creating the bootstrap token's Secret"),
        }
    }
}

/// The Secret that stores `token`, as `kubeadm token create` writes it.
fn token_secret(token: &BootstrapToken, expiration: Option<&str>, description: &str) -> Secret {
    let mut data = BTreeMap::from([
        (bootstrap_token::DATA_TOKEN_ID.to_owned(), token.id().to_owned()),
        (bootstrap_token::DATA_TOKEN_SECRET.to_owned(), token.secret().to_owned()),
        (bootstrap_token::DATA_USAGE_AUTHENTICATION.to_owned(), "true".to_owned()),
        (bootstrap_token::DATA_DESCRIPTION.to_owned(), description.to_owned()),
    ]);
    if let Some(expiration) = expiration {
        data.insert(bootstrap_token::DATA_EXPIRATION.to_owned(), expiration.to_owned());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(token.secret_name()),
            namespace: Some(bootstrap_token::NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some(bootstrap_token::SECRET_TYPE.to_owned()),
        string_data: Some(data),
        ..Secret::default()
    }
}

/// A new token from the thread's CSPRNG.
fn random_token() -> BootstrapToken {
    let mut rng = rand::rng();
    let mut part = |length: usize| -> String {
        (0..length).map(|_| char::from(TOKEN_ALPHABET[rng.random_range(0..TOKEN_ALPHABET.len())])).collect()
    };
    let text =
        format!("{}.{}", part(bootstrap_token::TOKEN_ID_LENGTH), part(bootstrap_token::TOKEN_SECRET_LENGTH));
    BootstrapToken::parse(&text).expect("a token drawn from the token alphabet has the token's shape")
}

/// The client config of the admin's kubeconfig: `path`, else `$KUBECONFIG`, else the one
/// `shoal up` writes.
async fn admin_config(path: Option<PathBuf>) -> anyhow::Result<kube::Config> {
    let from_env = if path.is_none() { Kubeconfig::from_env().context("reading $KUBECONFIG")? } else { None };
    let kubeconfig = match (path, from_env) {
        (Some(path), _) => {
            Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, Some(kubeconfig)) => kubeconfig,
        (None, None) => {
            let path = crate::up::default_dir().join("kubeconfig");
            Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?
        }
    };
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("loading the kubeconfig")
}

/// A Go-style duration (`24h`, `1h30m`) or an ISO 8601 one (`PT24H`).
fn parse_ttl(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let duration: jiff::SignedDuration = text.parse().map_err(|error| format!("{error}"))?;
    Duration::try_from(duration).map_err(|_| "the lifetime must not be negative".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Random tokens have the bootstrap token shape and differ from each other.
    #[test]
    fn random_tokens_have_the_shape() {
        let tokens: std::collections::BTreeSet<String> =
            (0..100).map(|_| random_token().to_string()).collect();
        assert_eq!(tokens.len(), 100);
        for token in &tokens {
            assert!(BootstrapToken::parse(token).is_some(), "{token}");
        }
    }

    // The Secret carries every field of the format, the expiration only when there is one.
    #[test]
    fn token_secrets_follow_the_format() {
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").expect("token");
        let secret = token_secret(&token, Some("2030-01-01T00:00:00Z"), "for n1");
        assert_eq!(secret.metadata.name.as_deref(), Some("bootstrap-token-abcdef"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(secret.type_.as_deref(), Some("bootstrap.kubernetes.io/token"));
        let data = secret.string_data.expect("data");
        let expected = [
            ("description", "for n1"),
            ("expiration", "2030-01-01T00:00:00Z"),
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-authentication", "true"),
        ];
        assert_eq!(data, expected.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect());
        let forever = token_secret(&token, None, "").string_data.expect("data");
        assert!(!forever.contains_key("expiration"));
    }

    // Lifetimes read as Go and ISO 8601 write them; negative ones are refused.
    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(24 * 3600)));
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("PT2H"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_ttl("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_ttl("0"), Ok(Duration::ZERO));
        assert!(parse_ttl("-1h").is_err());
        assert!(parse_ttl("soon").is_err());
    }
}
