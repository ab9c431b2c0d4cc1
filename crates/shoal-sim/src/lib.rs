//! Deterministic simulation support for shoal: test-only tools that check what a cluster
//! did (a dev-dependency, never part of the binary).

pub mod linearizability;
