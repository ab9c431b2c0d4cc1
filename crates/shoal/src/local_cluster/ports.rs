//! Free loopback ports for members whose ports are not fixed (`Ports::Dynamic`).

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::Mutex;

use anyhow::{bail, ensure};

/// Dynamic ports are taken from `[PORT_FLOOR, ceiling)`, the ceiling being the start of the
/// kernel's ephemeral range or of the NodePort range, whichever is lower: an agent listens on
/// every Service's NodePort on the same addresses, so a member there could take one from it.
const PORT_FLOOR: u16 = 10_000;
/// Random ports tried before giving up on finding a free one.
const PORT_PROBES: u32 = 200;

/// Ports this process handed out: never twice, even after their member stopped listening.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port of 127.0.0.1 that nothing listens on now, chosen at random below the ephemeral
/// and NodePort ranges so that clusters of concurrent test processes rarely pick the same one; a clash
/// that happens anyway is caught at launch (see `LAUNCH_ATTEMPTS`).
pub(super) fn free_port() -> anyhow::Result<u16> {
    let ceiling = ephemeral_range_start().min(shoal_apiserver::allocator::NODE_PORT_MIN);
    ensure!(ceiling > PORT_FLOOR, "the ephemeral port range starts at {ceiling}, below {PORT_FLOOR}");
    let random = std::hash::RandomState::new();
    let mut handed_out = HANDED_OUT.lock().expect("port registry lock poisoned");
    for probe in 0..PORT_PROBES {
        let offset = random.hash_one(probe) % u64::from(ceiling - PORT_FLOOR);
        let port = PORT_FLOOR + u16::try_from(offset).expect("offset below a u16 range");
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    bail!("no free port found in {PORT_PROBES} probes of {PORT_FLOOR}..{ceiling}")
}

/// The first port the kernel hands to outgoing connections (Linux's default when unknown).
fn ephemeral_range_start() -> u16 {
    const LINUX_DEFAULT: u16 = 32_768;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    range.split_whitespace().next().and_then(|low| low.parse().ok()).unwrap_or(LINUX_DEFAULT)
}
