//! `metrics.k8s.io/v1beta1`, what `kubectl top` reads, served as metrics-server serves it:
//! `NodeMetrics` at `/apis/metrics.k8s.io/v1beta1/nodes[/<name>]` and `PodMetrics` at
//! `…/namespaces/<ns>/pods[/<name>]` and `…/pods`, get and list only (no watch), selectors
//! applied to the Nodes and Pods they describe.
//!
//! Nothing is stored. A request reads the Nodes (or Pods) it asks about, fetches
//! `GET /stats/summary` from the agent of every Ready node concerned, in parallel through the
//! `NodeDialer` with a timeout, and turns two summaries of each node into usage (`usage`):
//! the one just fetched and an earlier one the `Sampler` kept. When a node has no earlier
//! summary fit for a rate (the first request, or none for over `usage::WINDOW_MAX`), the request
//! fetches that node's summary a second time after `PAIR_INTERVAL` and takes the rate over that
//! interval: the first `kubectl top` takes about a second longer than the next ones. A node
//! that cannot be reached, and a pod its node's summaries do not cover, are left out of lists
//! and are 404 for a get, as with metrics-server.

pub mod types;
pub mod usage;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use http::{Method, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;

use crate::api::{Api, Call, Reply, TABLE_CONTENT_TYPE};
use crate::error::ApiError;
use crate::node_proxy::{self, NodeDialer};
use crate::objects::{ListRequest, ReadAt};
use crate::read::Filter;
use crate::resource::{self, ResourceType};
use types::{MetricsList, NodeMetrics, PodMetrics};
use usage::{History, Summary};

/// The agent's path with the node's and its pods' counters.
pub const SUMMARY_PATH: &str = "/stats/summary";
/// How long fetching one node's summary may take, connection included.
const SUMMARY_TIMEOUT: Duration = Duration::from_secs(5);
/// A summary larger than this is refused: 110 pods of a few containers take some 100 KiB.
const SUMMARY_BYTES_MAX: usize = 4 << 20;
/// Summaries fetched at once by one request.
const SUMMARY_FETCHES_MAX: usize = 32;
/// The wait between a node's two summaries when it has no earlier one.
const PAIR_INTERVAL: Duration = Duration::from_secs(1);
const _: () = assert!(usage::WINDOW_MIN.as_millis() < PAIR_INTERVAL.as_millis() as i128);
/// Nodes whose summaries the `Sampler` keeps (each keeps two); beyond it, the least recently
/// sampled are forgotten.
const NODES_SAMPLED_MAX: usize = 1024;

/// The summaries kept per node for later rates, shared by the API's requests.
#[derive(Debug, Default)]
pub struct Sampler {
    // A std mutex: it is held only to read or replace an entry, never across an await.
    histories: Mutex<HashMap<String, Sampled>>,
}

#[derive(Debug)]
struct Sampled {
    history: History,
    recorded_at: Instant,
}

/// Two summaries of a node, older first.
type Pair = (Arc<Summary>, Arc<Summary>);

/// Why a node's summary is missing; logged, never shown to the client, which just does not
/// get that node's metrics.
#[derive(Debug, thiserror::Error)]
enum SummaryError {
    #[error("the agent cannot be reached: {message}")]
    Unreachable { message: String },
    #[error("the agent answered {status}")]
    Status { status: StatusCode },
    #[error("the summary did not arrive within {SUMMARY_TIMEOUT:?}")]
    Timeout,
    #[error("the summary is larger than {SUMMARY_BYTES_MAX} bytes or was cut off")]
    Body,
    #[error("decoding the summary")]
    Decode(#[source] serde_json::Error),
}

/// A request on `metrics.k8s.io`.
pub async fn serve(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    if call.method != Method::GET || call.query.watch {
        return Err(ApiError::MethodNotAllowed {
            message: format!(
                "the server does not allow this method on the requested resource ({} {})",
                if call.query.watch { "WATCH" } else { call.method.as_str() },
                call.target.resource.qualified_plural()
            ),
        });
    }
    let dialer = api.node_dialer.as_ref().ok_or_else(|| ApiError::ServiceUnavailable {
        message: "this API server has no kubelet client certificate and cannot reach nodes".into(),
    })?;
    let now = jiff::Timestamp::now();
    let target = &call.target;
    let items: Vec<Value> = if target.resource.namespaced {
        let pods = select(api, call, core("pods")).await?;
        let nodes = nodes_named(api, pods.iter().filter_map(node_name).collect()).await?;
        let pairs = api.sampler.pairs(dialer, &nodes).await;
        pods.iter()
            .filter_map(|pod| {
                let (baseline, latest) = pairs.get(node_name(pod)?)?;
                let usage = usage::pod_usage(baseline, latest, crate::meta::metadata_str(pod, "uid"))?;
                Some(to_value(PodMetrics::new(pod, &usage, now)))
            })
            .collect()
    } else {
        let nodes = select(api, call, core("nodes")).await?;
        let reachable: Vec<(String, SocketAddr)> = nodes.iter().filter_map(reachable).collect();
        let pairs = api.sampler.pairs(dialer, &reachable).await;
        nodes
            .iter()
            .filter_map(|node| {
                let (baseline, latest) = pairs.get(crate::meta::name(node))?;
                let usage = usage::node_usage(baseline, latest)?;
                Some(to_value(NodeMetrics::new(node, &usage, now)))
            })
            .collect()
    };
    reply(call, items)
}

/// The Nodes or Pods a request is about: the one it names, else those its selectors pick.
async fn select(
    api: &Api,
    call: &Call<'_>,
    described: &'static ResourceType,
) -> Result<Vec<Value>, ApiError> {
    let target = &call.target;
    if let Some(name) = target.name {
        let stored = api.objects.get(described, target.namespace, name, ReadAt::Latest).await?;
        return Ok(stored.map(|stored| stored.object).into_iter().collect());
    }
    let filter = Filter::from_query(described, &call.query)?;
    let matches = |object: &Value| filter.matches(object);
    let request = ListRequest {
        resource: described,
        namespace: target.namespace,
        read: ReadAt::Latest,
        limit: None,
        continue_token: None,
        filter: &matches,
    };
    Ok(api.objects.list(&request).await?.items)
}

/// The reachable ones among the nodes named.
async fn nodes_named(api: &Api, names: BTreeSet<&str>) -> Result<Vec<(String, SocketAddr)>, ApiError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = |node: &Value| names.contains(crate::meta::name(node));
    let request = ListRequest {
        resource: core("nodes"),
        namespace: None,
        read: ReadAt::Latest,
        limit: None,
        continue_token: None,
        filter: &wanted,
    };
    Ok(api.objects.list(&request).await?.items.iter().filter_map(reachable).collect())
}

/// A Ready node's name and its agent's address.
fn reachable(node: &Value) -> Option<(String, SocketAddr)> {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .any(|condition| condition["type"] == "Ready" && condition["status"] == "True");
    if !ready {
        return None;
    }
    Some((crate::meta::name(node).to_owned(), node_proxy::kubelet_address(node)?))
}

fn node_name(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|name| !name.is_empty())
}

fn core(plural: &str) -> &'static ResourceType {
    resource::find("", "v1", plural).expect("nodes and pods are served")
}

fn to_value(metrics: impl serde::Serialize) -> Value {
    serde_json::to_value(metrics).expect("metrics serialize")
}

/// The object of a get (404 without it), or the list; as a Table if asked.
fn reply(call: &Call<'_>, items: Vec<Value>) -> Result<Reply, ApiError> {
    let target = &call.target;
    if let Some(name) = target.name
        && items.is_empty()
    {
        // metrics-server's message names the resource by its kind and the pod with its namespace.
        let kind = target.resource.kind.to_lowercase();
        let name = match target.namespace {
            Some(namespace) => format!("{namespace}/{name}"),
            None => name.to_owned(),
        };
        return Err(ApiError::NotFound {
            resource: format!("{kind}.{}", types::GROUP),
            name,
            group: types::GROUP.into(),
            kind,
        });
    }
    if call.wants_table() {
        let body = crate::read::table(target.resource, &items, &call.query);
        return Ok(Reply::Json {
            code: StatusCode::OK,
            body,
            content_type: TABLE_CONTENT_TYPE,
            warnings: Vec::new(),
        });
    }
    if target.name.is_some() {
        return Ok(Reply::ok(items.into_iter().next().expect("a get with no object was answered 404")));
    }
    let kind = if target.resource.namespaced { "PodMetricsList" } else { "NodeMetricsList" };
    Ok(Reply::ok(MetricsList::new(kind, items)))
}

impl Sampler {
    /// Two summaries of each of `nodes` (name, agent address) fit for a rate; a node missing
    /// from the answer could not be sampled.
    async fn pairs(&self, dialer: &NodeDialer, nodes: &[(String, SocketAddr)]) -> HashMap<String, Pair> {
        let mut pairs = HashMap::new();
        let mut unpaired = Vec::new();
        for (node, summary) in fetch_all(dialer, nodes.to_vec()).await {
            match self.record(&node.0, summary.clone()) {
                Some(baseline) => {
                    pairs.insert(node.0, (baseline, summary));
                }
                None => unpaired.push(node),
            }
        }
        if unpaired.is_empty() {
            return pairs;
        }
        tokio::time::sleep(PAIR_INTERVAL).await;
        for (node, summary) in fetch_all(dialer, unpaired).await {
            if let Some(baseline) = self.record(&node.0, summary.clone()) {
                pairs.insert(node.0, (baseline, summary));
            }
        }
        pairs
    }

    /// Keeps `summary` in the node's history; returns the earlier summary to compare it with.
    fn record(&self, node: &str, summary: Arc<Summary>) -> Option<Arc<Summary>> {
        let mut histories = self.histories.lock().expect("the sampler's lock is never poisoned");
        let (history, baseline) = usage::record(histories.get(node).map(|sampled| &sampled.history), summary);
        histories.insert(node.to_owned(), Sampled { history, recorded_at: Instant::now() });
        if histories.len() > NODES_SAMPLED_MAX {
            let oldest = histories
                .iter()
                .min_by_key(|(_, sampled)| sampled.recorded_at)
                .map(|(name, _)| name.clone())
                .expect("the map is not empty");
            histories.remove(&oldest);
        }
        baseline
    }
}

/// The summaries of `nodes` fetched in parallel; the nodes that failed are logged and left out.
async fn fetch_all(
    dialer: &NodeDialer,
    nodes: Vec<(String, SocketAddr)>,
) -> Vec<((String, SocketAddr), Arc<Summary>)> {
    futures::stream::iter(nodes)
        .map(|node| async move {
            let fetched = tokio::time::timeout(SUMMARY_TIMEOUT, fetch(dialer, node.1))
                .await
                .unwrap_or(Err(SummaryError::Timeout));
            match fetched {
                Ok(summary) => Some((node, Arc::new(summary))),
                Err(error) => {
                    let cause = std::error::Error::source(&error).map(ToString::to_string);
                    tracing::debug!(node = node.0, %error, ?cause, "no metrics from the node");
                    None
                }
            }
        })
        .buffer_unordered(SUMMARY_FETCHES_MAX)
        .filter_map(std::future::ready)
        .collect()
        .await
}

async fn fetch(dialer: &NodeDialer, address: SocketAddr) -> Result<Summary, SummaryError> {
    let response = dialer
        .get(address, SUMMARY_PATH, &[])
        .await
        .map_err(|message| SummaryError::Unreachable { message })?;
    if response.status() != StatusCode::OK {
        return Err(SummaryError::Status { status: response.status() });
    }
    let body = http_body_util::Limited::new(response.into_body(), SUMMARY_BYTES_MAX)
        .collect()
        .await
        .map_err(|_| SummaryError::Body)?
        .to_bytes();
    serde_json::from_slice(&body).map_err(SummaryError::Decode)
}
