//! Deterministic simulation support for shoal: test-only tools that run a whole store cluster
//! under faults and check what it did (a dev-dependency, never part of the binary).
//!
//! A run ([`run::run`]) puts every member of a store cluster on its own turmoil host, running the
//! real `shoal_store::server::start` over turmoil's simulated TCP ([`net`]) with its data on
//! tmpfs ([`cluster`]); drives clients ([`workload`], [`history`]) and faults ([`nemesis`]) from
//! one seed; checks Raft's safety properties after every step and, once everything is healed,
//! convergence, durability and linearizability ([`invariants`], [`linearizability`]).
//!
//! Determinism: the simulation runs every host on one thread, in simulated time. The seed decides
//! turmoil's network (latencies, delivery order), the nemesis, the clients, every member's fault
//! plan stream and random ids, and openraft's election timeouts (`shoal_store::raft::
//! seed_thread_rng`). What no seed reaches is tokio's own randomness: without the unstable
//! `--cfg tokio_unstable`, each runtime picks which ready branch of a `tokio::select!` to poll
//! first from an unseeded generator, so two runs of one seed can drift apart where two branches
//! were ready in the same tick. A failure is therefore replayed by its seed most of the time, not
//! always.

pub mod cluster;
pub mod history;
pub mod invariants;
pub mod linearizability;
pub mod nemesis;
pub mod net;
pub mod run;
pub mod workload;
