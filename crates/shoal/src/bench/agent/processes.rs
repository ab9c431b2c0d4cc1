//! What /proc tells about the bench's processes: the agent's, its shims' and their
//! containers' memory (the shims are the agent's children, the containers theirs), the CPU time
//! each has used, and the machine's load, which other work on it shares.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;

use crate::local_cluster::LocalCluster;

/// One process's memory as /proc reports it, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ProcessMemory {
    /// Resident now (VmRSS), shared pages included.
    pub(super) rss_kib: u64,
    /// The most it was ever resident (VmHWM).
    pub(super) peak_kib: u64,
    /// Proportional share (Pss): shared pages divided among the processes that map them.
    pub(super) pss_kib: u64,
    /// Of the resident pages, those of the heap and stacks (RssAnon)…
    pub(super) anon_kib: u64,
    /// …and those of mapped files, mostly the shoal executable's code (RssFile).
    pub(super) file_kib: u64,
}

impl ProcessMemory {
    pub(super) fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
        Some(Self {
            rss_kib: kib_field(&status, "VmRSS:")?,
            peak_kib: kib_field(&status, "VmHWM:")?,
            pss_kib: kib_field(&rollup, "Pss:")?,
            anon_kib: kib_field(&status, "RssAnon:")?,
            file_kib: kib_field(&status, "RssFile:")?,
        })
    }

    pub(super) fn row(&self) -> String {
        format!(
            "{:.2} MiB (anonymous {:.2} MiB, file-backed {:.2} MiB; PSS {:.2} MiB; peak so far {:.2} MiB)",
            mib(self.rss_kib),
            mib(self.anon_kib),
            mib(self.file_kib),
            mib(self.pss_kib),
            mib(self.peak_kib)
        )
    }
}

/// A `Name:   1234 kB` line of a /proc file.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(name))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The memory of the node's processes, and of the servers for context.
pub(super) struct Memory {
    pub(super) agent: ProcessMemory,
    pub(super) shims: Vec<ProcessMemory>,
    pub(super) containers: Vec<ProcessMemory>,
    pub(super) servers: Vec<ProcessMemory>,
}

/// Reads the agent's memory, its shims' (its children running `shoal shim`) and their
/// containers' (the shims' descendants).
pub(super) fn memory(cluster: &LocalCluster, agent_pid: u32) -> anyhow::Result<Memory> {
    let parents = process_parents();
    let children = |of: &HashSet<u32>| -> HashSet<u32> {
        parents.iter().filter(|(_, parent)| of.contains(parent)).map(|(pid, _)| *pid).collect()
    };
    let shims: HashSet<u32> = children(&HashSet::from([agent_pid]))
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.split(|byte| *byte == 0).any(|arg| arg == b"shim")
        })
        .collect();
    let mut containers = HashSet::new();
    let mut generation = children(&shims);
    while !generation.is_empty() {
        containers.extend(&generation);
        generation = children(&generation);
    }
    let read_all = |pids: &HashSet<u32>| pids.iter().filter_map(|pid| ProcessMemory::of(*pid)).collect();
    let servers = (0..cluster.len()).filter_map(|i| cluster.pid(i)).filter_map(ProcessMemory::of).collect();
    Ok(Memory {
        agent: ProcessMemory::of(agent_pid).context("reading the agent's memory")?,
        shims: read_all(&shims),
        containers: read_all(&containers),
        servers,
    })
}

/// Every process's parent, from /proc/<pid>/stat.
fn process_parents() -> HashMap<u32, u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return HashMap::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may hold spaces and parentheses; the fields after its last ')'
            // are the state, then the parent.
            let parent = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, parent))
        })
        .collect()
}

/// CPU time (user and system) of the processes of the bench.
#[derive(Clone, Debug, Default)]
pub(super) struct CpuUse {
    pub(super) agent: Duration,
    /// The agent's children that it has reaped (shims), with their own reaped children
    /// (containers): what ran for pods that are gone.
    pub(super) agent_children: Duration,
    pub(super) servers: Vec<Duration>,
    pub(super) bench: Duration,
}

impl CpuUse {
    pub(super) fn read(cluster: &LocalCluster, agent_pid: u32) -> Self {
        let (agent, agent_children) = cpu_times(agent_pid).unwrap_or_default();
        let servers = (0..cluster.len())
            .map(|i| cluster.pid(i).and_then(cpu_times).map_or(Duration::ZERO, |(own, _)| own))
            .collect();
        let bench = cpu_times(std::process::id()).map_or(Duration::ZERO, |(own, _)| own);
        Self { agent, agent_children, servers, bench }
    }

    pub(super) fn since(&self, before: &Self) -> Self {
        Self {
            agent: self.agent.saturating_sub(before.agent),
            agent_children: self.agent_children.saturating_sub(before.agent_children),
            servers: self
                .servers
                .iter()
                .zip(&before.servers)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
            bench: self.bench.saturating_sub(before.bench),
        }
    }
}

/// A process's own CPU time and that of its reaped children, from /proc/<pid>/stat.
pub(in crate::bench) fn cpu_times(pid: u32) -> Option<(Duration, Duration)> {
    // /proc counts in USER_HZ, which is 100 on every Linux architecture shoal runs on.
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields 14 to 17 (utime, stime, cutime, cstime), counted from the state after the ')'.
    let fields: Vec<u64> = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [user, system, children_user, children_system] = fields[..] else { return None };
    let ticks = |ticks: u64| Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND);
    Some((ticks(user + system), ticks(children_user + children_system)))
}

/// The machine's 1-minute load average.
pub(in crate::bench) fn load_average() -> f64 {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().and_then(|first| first.parse().ok()).unwrap_or(f64::NAN)
}

pub(super) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
