//! The service proxy's kernel data path: the [`Table`] as nf_tables rules that rewrite the
//! destination of each new connection (DNAT), so that no byte of it passes through the agent.
//! It is kube-proxy's nftables mode, smaller; `shoal agent --proxy-mode nftables` chooses it.
//!
//! The kernel table `ip shoal` holds:
//! - map `service-ports`: `address . protocol . port` of every listen address of a Service
//!   port with ready endpoints → `goto` that Service port's chain;
//! - base chains `nat-output` (connections opened on this machine: the process runtime's pods
//!   and the host) and `nat-prerouting` (connections from other machines), which look each new
//!   connection's destination up in the map;
//! - chain `svc-<namespace>/<service>/<port name>` per Service port, which picks an endpoint:
//!   under `sessionAffinity: ClientIP` a client seen within the timeout goes back to its
//!   endpoint, any other to one drawn at random (`numgen random`);
//! - chain `ep-<namespace>/<service>/<port name>/<ip>/<port>` per endpoint, which records the
//!   client in set `aff<seconds>-…` under affinity and rewrites the destination;
//! - set `no-endpoints` and filter chains `reject-output` and `reject-input`: a connection to a
//!   Service port without ready endpoints is reset at once, as kube-proxy rejects it.
//!
//! The unnamed port of a Service is `_` in names (Kubernetes names never hold one). Only what
//! conntrack sees as a new connection meets these rules: established connections keep their
//! endpoint when it leaves the table, as in the userspace path.
//!
//! Every write is one `nft -f` transaction built from the proxy table and from the names the
//! kernel holds (read with `nft -j list` just before): flush every chain, add what is wanted;
//! a second transaction then deletes what is no longer wanted (kernels before 6.2 refuse that
//! in the first). Affinity sets still wanted are kept, with their clients. The agents of one
//! machine all write the same kernel table, each its whole view, on every change it sees: a
//! transaction that loses a race with another agent's fails as a whole and is retried from a
//! fresh read. An agent writes only once its caches have listed, and rewrites an unchanged
//! view only if the table is gone, so an agent cut off from the API leaves the others' newer
//! views alone.
//!
//! Unlike the userspace path, a refused connect is not retried on another endpoint (neither
//! do kube-proxy's iptables and nftables modes); it is IPv4 only; it needs `CAP_NET_ADMIN`
//! and the `nft` command (Debian package nftables); and it is for one machine, as loopback
//! addresses are: it masquerades nothing, so a connection from another machine to a loopback
//! endpoint, or from a loopback ClusterIP to another machine's pod, does not work. An agent that stops leaves the table in
//! place, so Services keep working for the pods that outlive it.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Notify;

use super::{NodeAddresses, ServicePortName, Table};

/// The kernel table the proxy owns.
pub const TABLE: &str = "shoal";
/// How long one `nft` command may take before it is killed and the write counted as failed.
pub const NFT_TIMEOUT: Duration = Duration::from_secs(10);
/// Writes tried at once, each from a fresh read, before a failure is reported (another agent
/// of the machine changing the table in between makes one fail).
pub const WRITE_ATTEMPTS: usize = 3;
/// How soon a failed write is tried again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How often the agent checks that the table is still there (a flushed ruleset removes it) and
/// writes it again if not.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(30);

const SERVICE_PORTS: &str = "service-ports";
const NO_ENDPOINTS: &str = "no-endpoints";
/// The base chain of connections opened on this machine; its absence means the table is gone.
const NAT_OUTPUT: &str = "nat-output";
/// The chains hooked into the kernel: name, type, hook, priority (`dstnat` and `filter`), and
/// what their one rule does.
const BASE_CHAINS: [(&str, &str, &str, i32, BaseRule); 4] = [
    (NAT_OUTPUT, "nat", "output", -100, BaseRule::Route),
    ("nat-prerouting", "nat", "prerouting", -100, BaseRule::Route),
    ("reject-output", "filter", "output", 0, BaseRule::Reject),
    ("reject-input", "filter", "input", 0, BaseRule::Reject),
];

#[derive(Clone, Copy)]
enum BaseRule {
    /// Looks the connection up in `service-ports`.
    Route,
    /// Resets a TCP connection to a port in `no-endpoints`.
    Reject,
}

impl BaseRule {
    fn text(self) -> String {
        match self {
            BaseRule::Route => format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_PORTS}"),
            BaseRule::Reject => {
                format!(
                    "meta l4proto tcp ip daddr . meta l4proto . th dport @{NO_ENDPOINTS} reject with tcp reset"
                )
            }
        }
    }
}

/// Why the kernel table could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The cause is part of the message, not a source: the proxy logs errors by their
    /// message alone.
    #[error("running nft (Debian package nftables; it needs CAP_NET_ADMIN): {0}")]
    Run(std::io::Error),
    #[error("nft {command} took longer than {NFT_TIMEOUT:?}")]
    TimedOut { command: String },
    #[error("nft {command} failed ({status}): {stderr}")]
    Failed { command: String, status: std::process::ExitStatus, stderr: String },
    #[error("reading nft's listing: {0}")]
    Listing(#[from] serde_json::Error),
}

/// Keeps the kernel table in step with the node's Service and EndpointSlice caches, until the
/// task is dropped. `changed` is notified by the caches' reflectors on every event.
pub async fn run(
    node: NodeAddresses,
    services: Store<Service>,
    endpoint_slices: Store<EndpointSlice>,
    changed: Arc<Notify>,
) {
    // An empty view, before the first listing, would wipe the table every agent of the
    // machine shares, and with an unreachable API leave it so.
    if services.wait_until_ready().await.is_err() || endpoint_slices.wait_until_ready().await.is_err() {
        return;
    }
    let mut written: Option<Table> = None;
    loop {
        let (services, slices) = (services.state(), endpoint_slices.state());
        let table =
            Table::compute(services.iter().map(AsRef::as_ref), slices.iter().map(AsRef::as_ref), node);
        if written.as_ref() != Some(&table) {
            match write(&table).await {
                Ok(()) => written = Some(table),
                Err(error) => {
                    tracing::warn!(%error, "the proxy could not write its nftables table; retrying");
                    written = None;
                }
            }
        }
        let wait = if written.is_some() { RESYNC_INTERVAL } else { RETRY_INTERVAL };
        tokio::select! {
            () = changed.notified() => {}
            () = tokio::time::sleep(wait) => {
                // A resync writes only a table that is gone (`nft flush ruleset`, say): another
                // agent's newer view must not be overwritten by this one's, which may be stale.
                let present = existing().await.is_ok_and(|existing| existing.chains.contains(NAT_OUTPUT));
                if !present {
                    written = None;
                }
            }
        }
    }
}

/// Makes the kernel table that of `table`: reads what the kernel holds and writes the
/// difference in one transaction, up to [`WRITE_ATTEMPTS`] times.
pub async fn write(table: &Table) -> Result<(), NftError> {
    let mut attempt = 1;
    loop {
        let result = async {
            let existing = existing().await?;
            let scripts = scripts(table, &existing);
            nft(&["-f", "-"], Some(&scripts.write)).await?;
            Ok::<_, NftError>(scripts.cleanup)
        }
        .await;
        match result {
            Ok(cleanup) => {
                // Left for the next write when it fails (another agent deleted one already).
                if let Some(cleanup) = cleanup
                    && let Err(error) = nft(&["-f", "-"], Some(&cleanup)).await
                {
                    tracing::debug!(%error, "deleting stale nftables chains failed; the next write tries again");
                }
                return Ok(());
            }
            Err(error) if attempt < WRITE_ATTEMPTS => {
                tracing::debug!(%error, attempt, "nftables write failed; reading the table again");
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// What the kernel table holds now.
pub async fn existing() -> Result<Existing, NftError> {
    Ok(Existing::parse(&nft(&["-j", "list", "table", "ip", TABLE], None).await?)?)
}

/// Removes the kernel table, if there is one.
pub async fn remove() -> Result<(), NftError> {
    nft(&["-f", "-"], Some(&format!("add table ip {TABLE}\ndelete table ip {TABLE}\n"))).await.map(drop)
}

/// Runs `nft` with `args`, `input` on its standard input, and returns its standard output.
/// "The table does not exist" when listing counts as an empty listing.
async fn nft(args: &[&str], input: Option<&str>) -> Result<String, NftError> {
    let mut command = tokio::process::Command::new("nft");
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    command.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().map_err(NftError::Run)?;
    let run = async {
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input.as_bytes()).await?;
        }
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(NFT_TIMEOUT, run)
        .await
        .map_err(|_| NftError::TimedOut { command: args.join(" ") })?
        .map_err(NftError::Run)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    if args.contains(&"list") && stderr.contains("No such file or directory") {
        return Ok(String::new());
    }
    Err(NftError::Failed { command: args.join(" "), status: output.status, stderr: stderr.trim().to_owned() })
}

/// The names of the chains and sets the kernel table holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Existing {
    pub chains: BTreeSet<String>,
    pub sets: BTreeSet<String>,
}

impl Existing {
    /// From the output of `nft -j list table ip shoal`; empty output is an absent table.
    pub fn parse(json: &str) -> Result<Existing, serde_json::Error> {
        let mut existing = Existing::default();
        if json.trim().is_empty() {
            return Ok(existing);
        }
        let listing: serde_json::Value = serde_json::from_str(json)?;
        let objects = listing.get("nftables").and_then(|objects| objects.as_array());
        for object in objects.into_iter().flatten() {
            let named = |kind: &str| object.get(kind)?.get("name")?.as_str().map(str::to_owned);
            if let Some(chain) = named("chain") {
                existing.chains.insert(chain);
            } else if let Some(set) = named("set") {
                existing.sets.insert(set);
            }
        }
        Ok(existing)
    }
}

/// The `nft -f` scripts that take the kernel table from `existing` to a proxy table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scripts {
    /// Everything but deleting what is no longer wanted.
    pub write: String,
    /// Deletes the chains and sets no longer wanted, or `None` when there are none. It runs in
    /// a transaction of its own after `write`'s: kernels before 6.2 refuse to delete a chain
    /// in the transaction that removes the last jump to it.
    pub cleanup: Option<String>,
}

/// The scripts that take the kernel table from `existing` to `table`.
pub fn scripts(table: &Table, existing: &Existing) -> Scripts {
    let wanted = Rules::of(table);
    Scripts { write: write_script(&wanted, existing), cleanup: cleanup_script(&wanted, existing) }
}

fn write_script(wanted: &Rules, existing: &Existing) -> String {
    let mut script = String::new();
    let mut line = |text: String| {
        script.push_str(&text);
        script.push('\n');
    };
    line(format!("add table ip {TABLE}"));
    for (chain, kind, hook, priority, _) in BASE_CHAINS {
        line(format!(
            "add chain ip {TABLE} {chain} {{ type {kind} hook {hook} priority {priority}; policy accept; }}"
        ));
    }
    line(format!(
        "add map ip {TABLE} {SERVICE_PORTS} {{ type ipv4_addr . inet_proto . inet_service : verdict; }}"
    ));
    line(format!("add set ip {TABLE} {NO_ENDPOINTS} {{ type ipv4_addr . inet_proto . inet_service; }}"));
    line(format!("flush map ip {TABLE} {SERVICE_PORTS}"));
    line(format!("flush set ip {TABLE} {NO_ENDPOINTS}"));
    for (set, timeout) in &wanted.affinity_sets {
        line(format!(
            "add set ip {TABLE} {set} {{ type ipv4_addr; flags dynamic,timeout; timeout {}s; }}",
            timeout.as_secs()
        ));
    }
    // Every chain is flushed, the wanted ones after an `add` (another agent may have created
    // one since `existing` was read), so that no rule of an older view is left in front of
    // this one's, and no stale chain is jumped to any more.
    for (chain, ..) in BASE_CHAINS {
        line(format!("flush chain ip {TABLE} {chain}"));
    }
    for chain in &wanted.chains {
        line(format!("add chain ip {TABLE} {chain}"));
        line(format!("flush chain ip {TABLE} {chain}"));
    }
    for chain in stale_chains(wanted, existing) {
        line(format!("flush chain ip {TABLE} {chain}"));
    }
    for (chain, .., rule) in BASE_CHAINS {
        line(format!("add rule ip {TABLE} {chain} {}", rule.text()));
    }
    for (chain, rule) in &wanted.rules {
        line(format!("add rule ip {TABLE} {chain} {rule}"));
    }
    if !wanted.service_ports.is_empty() {
        line(format!("add element ip {TABLE} {SERVICE_PORTS} {{ {} }}", wanted.service_ports.join(", ")));
    }
    if !wanted.no_endpoints.is_empty() {
        line(format!("add element ip {TABLE} {NO_ENDPOINTS} {{ {} }}", wanted.no_endpoints.join(", ")));
    }
    script
}

fn cleanup_script(wanted: &Rules, existing: &Existing) -> Option<String> {
    let stale_sets =
        existing.sets.iter().filter(|set| *set != NO_ENDPOINTS && !wanted.affinity_sets.contains_key(*set));
    let script: String = stale_chains(wanted, existing)
        .map(|chain| format!("delete chain ip {TABLE} {chain}\n"))
        .chain(stale_sets.map(|set| format!("delete set ip {TABLE} {set}\n")))
        .collect();
    (!script.is_empty()).then_some(script)
}

/// The chains of `existing` that are neither base chains nor wanted.
fn stale_chains<'a>(wanted: &'a Rules, existing: &'a Existing) -> impl Iterator<Item = &'a String> {
    let base = |chain: &str| BASE_CHAINS.iter().any(|(name, ..)| *name == chain);
    existing.chains.iter().filter(move |chain| !base(chain) && !wanted.chains.contains(*chain))
}

/// What the kernel table should hold for a proxy table, apart from the base chains.
#[derive(Default)]
struct Rules {
    /// Every Service port and endpoint chain.
    chains: BTreeSet<String>,
    /// Every affinity set, with its timeout.
    affinity_sets: BTreeMap<String, Duration>,
    /// `(chain, rule)` in order.
    rules: Vec<(String, String)>,
    /// Elements of the `service-ports` map.
    service_ports: Vec<String>,
    /// Elements of the `no-endpoints` set.
    no_endpoints: Vec<String>,
}

impl Rules {
    fn of(table: &Table) -> Rules {
        let mut rules = Rules::default();
        // Two Service ports never share an address in a valid cluster; should they, the first
        // in the table's order keeps it, as in the userspace path.
        let mut taken = BTreeSet::new();
        for entry in table.entries.values() {
            let listen: Vec<(IpAddr, u16)> = entry
                .listen
                .iter()
                .filter(|address| address.is_ipv4() && taken.insert(**address))
                .map(|address| (address.ip(), address.port()))
                .collect();
            let route = &entry.route;
            let endpoints: Vec<SocketAddr> =
                route.endpoints.iter().copied().filter(SocketAddr::is_ipv4).collect();
            if listen.is_empty() {
                continue;
            }
            if endpoints.is_empty() {
                rules.no_endpoints.extend(listen.iter().map(|(ip, port)| format!("{ip} . tcp . {port}")));
                continue;
            }
            let service_chain = format!("svc-{}", name(&route.service));
            rules.service_ports.extend(
                listen.iter().map(|(ip, port)| format!("{ip} . tcp . {port} : goto {service_chain}")),
            );
            let mut picks = Vec::with_capacity(endpoints.len());
            for (index, endpoint) in endpoints.iter().enumerate() {
                let endpoint_name = format!("{}/{}/{}", name(&route.service), endpoint.ip(), endpoint.port());
                let endpoint_chain = format!("ep-{endpoint_name}");
                if let Some(timeout) = route.affinity {
                    let set = format!("aff{}-{endpoint_name}", timeout.as_secs());
                    rules
                        .rules
                        .push((service_chain.clone(), format!("ip saddr @{set} goto {endpoint_chain}")));
                    rules.rules.push((endpoint_chain.clone(), format!("update @{set} {{ ip saddr }}")));
                    rules.affinity_sets.insert(set, timeout);
                }
                rules.rules.push((endpoint_chain.clone(), format!("meta l4proto tcp dnat to {endpoint}")));
                picks.push(format!("{index} : goto {endpoint_chain}"));
                rules.chains.insert(endpoint_chain);
            }
            rules.rules.push((
                service_chain.clone(),
                format!("numgen random mod {} vmap {{ {} }}", endpoints.len(), picks.join(", ")),
            ));
            rules.chains.insert(service_chain);
        }
        rules
    }
}

/// `namespace/service/port`, the unnamed port as `_`.
fn name(service: &ServicePortName) -> String {
    let port = if service.port.is_empty() { "_" } else { service.port.as_str() };
    format!("{}/{}/{port}", service.namespace, service.service)
}

/// Runs `work` on a thread of its own in a new network namespace whose loopback is up, for
/// tests and benches whose nftables tables must not touch the machine's. Needs root (and the
/// `ip` command, to raise the loopback).
pub fn in_private_network<T: Send>(work: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // Only this thread moves; unsharing the network namespace has none of
                // `unshare_unsafe`'s CLONE_FILES hazard, and the workspace forbids `unsafe`.
                #[allow(deprecated)]
                rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNET)?;
                // A child forked from this thread starts in its namespace.
                let status = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status()?;
                if !status.success() {
                    return Err(std::io::Error::other(format!("ip link set lo up: {status}")));
                }
                Ok(work())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
