//! Seeded deterministic simulations of shoal store clusters under faults (`shoal_sim::run`).
//!
//! `seeds_shard_0` and `seeds_shard_1` run a fixed list of seeds between them: 0..200, even seeds
//! with 3 members and odd seeds with 5 (`SHOAL_SIM_SEEDS=N` runs 0..N instead). Each seed runs a
//! cluster through partitions, lossy links, crashes and restarts while clients write and read,
//! then heals it and checks Election Safety and State Machine Safety (throughout), convergence,
//! durability of acknowledged writes, and linearizability of the clients' history. A failing seed
//! prints its fault trace and the command that replays it alone, verbosely:
//! `SHOAL_SIM_SEED=N cargo test -p shoal-sim --test simulation -- replay --nocapture`
//! (`RUST_LOG=debug` adds the store's own logs; `SHOAL_SIM_DUMP=dir` writes every run's history
//! and trace to `dir/seed-N.txt`, to find where two runs of a seed part).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use shoal_sim::run::{Output, RunConfig, run};
use tracing_subscriber::EnvFilter;

/// Seeds run by default, in CI.
const DEFAULT_SEEDS: u64 = 200;

fn seed_count() -> u64 {
    match std::env::var("SHOAL_SIM_SEEDS") {
        Ok(count) => count.parse().expect("SHOAL_SIM_SEEDS is a number of seeds"),
        Err(_) => DEFAULT_SEEDS,
    }
}

/// Quiet, dumping each run's history and trace to SHOAL_SIM_DUMP if set.
fn output(verbose: bool) -> Output {
    Output { verbose, dump_dir: std::env::var_os("SHOAL_SIM_DUMP").map(Into::into) }
}

fn replay_command(seed: u64) -> String {
    format!("SHOAL_SIM_SEED={seed} cargo test -p shoal-sim --test simulation -- replay --nocapture")
}

/// Runs every seed, reporting each failure with its replay command, and fails if any failed.
fn run_seeds(seeds: impl Iterator<Item = u64>) {
    let started = Instant::now();
    let mut ran = 0;
    let mut failed = Vec::new();
    for seed in seeds {
        ran += 1;
        match catch_unwind(AssertUnwindSafe(|| run(RunConfig::for_seed(seed), &output(false)))) {
            Ok(Ok(summary)) => eprintln!("{summary}"),
            Ok(Err(failure)) => {
                eprintln!("{failure}");
                failed.push(seed);
            }
            Err(_) => {
                eprintln!("seed {seed} panicked (message above)\nreplay: {}", replay_command(seed));
                failed.push(seed);
            }
        }
    }
    eprintln!("{ran} seeds in {:.1?}", started.elapsed());
    assert!(
        failed.is_empty(),
        "{} of {ran} seeds failed: {failed:?}; replay one with {}",
        failed.len(),
        replay_command(failed[0])
    );
}

// The first half of the seeds (0, 1, 4, 5, 8, 9, …): each a 3- or 5-member cluster through
// its whole fault schedule and every check. Seeds are split in two shards of equal cost, which
// the test harness runs in parallel.
#[test]
fn seeds_shard_0() {
    run_seeds((0..seed_count()).filter(|seed| (seed / 2).is_multiple_of(2)));
}

// The other half of the seeds (2, 3, 6, 7, …), as `seeds_shard_0`.
#[test]
fn seeds_shard_1() {
    run_seeds((0..seed_count()).filter(|seed| seed / 2 % 2 == 1));
}

// Runs two seeds twice each and compares everything observable (the clients' history and the
// fault trace): a failing seed can only be replayed if its run depends on nothing but the seed.
// Not in CI: h2 forgets a stream it reset after one second of wall-clock time, so a run whose
// held messages reach a reset stream late enough can part from another on a busier machine.
#[test]
#[ignore = "determinism check, run on demand; h2's wall-clock reset window makes it rarely flaky"]
fn same_seed_same_run() {
    for seed in [0, 1] {
        let first =
            run(RunConfig::for_seed(seed), &output(false)).unwrap_or_else(|failure| panic!("{failure}"));
        let second =
            run(RunConfig::for_seed(seed), &output(false)).unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(
            first.fingerprint, second.fingerprint,
            "seed {seed} ran differently twice: is the build missing `--cfg tokio_unstable` (.cargo/config.toml)?"
        );
    }
}

// Replays the seed in SHOAL_SIM_SEED alone, printing the fault trace as it happens (and the
// store's logs with RUST_LOG); does nothing without it.
#[test]
fn replay() {
    let Ok(seed) = std::env::var("SHOAL_SIM_SEED") else {
        eprintln!("set SHOAL_SIM_SEED to replay one seed");
        return;
    };
    let seed = seed.parse().expect("SHOAL_SIM_SEED is a seed number");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("off")))
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    match run(RunConfig::for_seed(seed), &output(true)) {
        Ok(summary) => eprintln!("{summary}\nin {:.1?}", started.elapsed()),
        Err(failure) => panic!("{failure}"),
    }
}
