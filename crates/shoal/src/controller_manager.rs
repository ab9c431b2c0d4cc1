//! Runs shoal's leader-elected roles, the controllers and the scheduler, each on one server at
//! a time.
//!
//! Every server campaigns for each role's Lease in kube-system (`shoal_controllers::
//! leader_election`); the one that holds it runs the role. The role's client is served by
//! this server's own API inside the process (`shoal_apiserver::server::LocalApi`: no TLS, TCP
//! or HTTP framing, but the same authorization, admission and store as any client) as user
//! `shoal:controllers` in `system:masters`, and carries the term's fence in every request (the
//! API server's `Shoal-Fence` header, `shoal_apiserver::fence`): once another server has taken
//! the Lease, no write of this term can land, even if this server was paused mid-write and
//! does not know yet that it was deposed.

use std::convert::Infallible;

use http_body_util::BodyExt as _;
use shoal_apiserver::auth::User;
use shoal_apiserver::fence::{Claim, HEADER};
use shoal_apiserver::server::LocalApi;
use shoal_controllers::leader_election::{self, ElectionConfig, Term};

/// The user the controllers and the scheduler act as.
pub fn controllers_user() -> User {
    User { name: "shoal:controllers".to_owned(), groups: vec!["system:masters".to_owned()] }
}

/// Campaigns, as `identity`, for the two leader-elected roles, each with its own Lease as in
/// Kubernetes (so they may lead from different servers): `kube-controller-manager` runs the
/// controllers and `kube-scheduler` the scheduler. Never returns.
pub async fn run(identity: String, api: LocalApi, config: shoal_controllers::Config) {
    // The election itself writes the Lease, which is not fenced.
    let client = client(&api, None);
    let controllers = lead(client.clone(), "kube-controller-manager", &identity, &api, |client| {
        shoal_controllers::run(client, config.clone())
    });
    let scheduler = lead(client, "kube-scheduler", &identity, &api, shoal_scheduler::run);
    futures::future::join(controllers, scheduler).await;
}

/// Runs `role` with a fenced client in every term of the Lease `lease` this server wins.
async fn lead<F>(
    election_client: kube::Client,
    lease: &str,
    identity: &str,
    api: &LocalApi,
    role: impl Fn(kube::Client) -> F,
) -> !
where
    F: std::future::Future<Output = ()>,
{
    let role = &role;
    leader_election::lead(election_client, ElectionConfig::new(lease), identity, |term| async move {
        role(client(api, Some(&term))).await;
    })
    .await
}

/// A client of `api`; with a `term`, every request carries its fence.
fn client(api: &LocalApi, term: Option<&Term>) -> kube::Client {
    let fence = term.map(|term| {
        let claim = Claim {
            namespace: term.namespace.clone(),
            lease: term.lease.clone(),
            holder: term.holder.clone(),
        };
        http::HeaderValue::try_from(claim.header_value()).expect("a fence is a valid header value")
    });
    let api = api.clone();
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let (api, fence) = (api.clone(), fence.clone());
        async move {
            let (mut parts, body) = request.into_parts();
            if let Some(fence) = fence {
                parts.headers.insert(http::HeaderName::from_static(HEADER), fence);
            }
            let body = body.map_err(std::io::Error::other).boxed_unsync();
            Ok::<_, Infallible>(api.handle(http::Request::from_parts(parts, body)).await)
        }
    });
    kube::Client::new(service, "default")
}

#[cfg(test)]
mod tests;
