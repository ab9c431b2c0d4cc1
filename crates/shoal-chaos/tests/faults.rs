//! The fault handle as the transport sees it: deterministic verdicts, partitions, rates,
//! counters and plan changes.

use std::time::Duration;

use shoal_chaos::{
    FaultPlan, Faults, JitterDistribution, Link, LinkCounters, LinkFaults, LinkFaultsError,
    MAX_TRACKED_LINKS, PlanError, Verdict,
};

const SEED: u64 = 0x5eed;

fn faults_with(plan: FaultPlan) -> Faults {
    let faults = Faults::new(SEED);
    faults.set_plan(plan).expect("test plans are valid");
    faults
}

fn plan_with_default(link_faults: LinkFaults) -> FaultPlan {
    let mut plan = FaultPlan::default();
    plan.set_default(link_faults);
    plan
}

fn noisy() -> LinkFaults {
    LinkFaults {
        drop_probability: 0.2,
        delay_ms: 1,
        jitter_ms: 20,
        jitter_distribution: JitterDistribution::Bell,
        duplicate_probability: 0.1,
        reorder_probability: 0.1,
        reorder_delay_max_ms: 50,
    }
}

/// The verdicts for `count` messages sent round-robin over `links`.
fn verdicts(faults: &Faults, links: &[(u64, u64)], count: usize) -> Vec<Verdict> {
    links.iter().cycle().take(count).map(|&(from, to)| faults.decide(from, to)).collect()
}

#[test]
fn decisions_replay_from_the_seed() {
    // Two handles with the same seed and plan give the same verdicts for the same
    // messages; another seed gives different ones.
    let links = [(1, 2), (2, 1), (1, 3), (3, 2)];
    let first = verdicts(&faults_with(plan_with_default(noisy())), &links, 1_000);
    let second = verdicts(&faults_with(plan_with_default(noisy())), &links, 1_000);
    assert_eq!(first, second);

    let other_seed = Faults::new(SEED + 1);
    other_seed.set_plan(plan_with_default(noisy())).unwrap();
    assert_ne!(first, verdicts(&other_seed, &links, 1_000));
}

#[test]
fn each_link_has_its_own_random_stream() {
    // Traffic on other links does not change a link's verdicts: 1->2 alone and 1->2
    // interleaved with 1->3 and 3->1 see the same sequence.
    let alone = faults_with(plan_with_default(noisy()));
    let busy = faults_with(plan_with_default(noisy()));
    for _ in 0..500 {
        busy.decide(1, 3);
        busy.decide(3, 1);
        assert_eq!(alone.decide(1, 2), busy.decide(1, 2));
    }
}

#[test]
fn partition_drops_everything_on_its_link_only() {
    // A one-way partition drops every message in its direction and none in the other or on
    // other links; a two-way partition drops both directions.
    let mut plan = FaultPlan::default();
    plan.partition_one_way(1, 2);
    let faults = faults_with(plan);
    let delivered = Verdict { deliver: true, delay: Duration::ZERO, duplicate: false, reordered: false };
    for _ in 0..100 {
        assert_eq!(faults.decide(1, 2), Verdict::DROP);
        assert_eq!(faults.decide(2, 1), delivered);
        assert_eq!(faults.decide(1, 3), delivered);
    }

    faults.update_plan(|plan| plan.partition(2, 3)).unwrap();
    assert_eq!(faults.decide(2, 3), Verdict::DROP);
    assert_eq!(faults.decide(3, 2), Verdict::DROP);
    assert_eq!(faults.decide(3, 1), delivered);
}

#[test]
fn isolate_cuts_a_member_off_from_all_others() {
    // An isolated member neither sends to nor receives from anyone; the rest still talk.
    let mut plan = FaultPlan::default();
    plan.isolate(2, [1, 2, 3]);
    let faults = faults_with(plan);
    for (from, to) in [(2, 1), (1, 2), (2, 3), (3, 2)] {
        assert!(!faults.decide(from, to).deliver, "{from}->{to}");
    }
    assert!(faults.decide(1, 3).deliver);
    assert!(faults.decide(3, 1).deliver);
}

#[test]
fn heal_restores_delivery_where_it_would_have_been() {
    // After heal, a partitioned link delivers again, and its verdicts are those of a link
    // that was never partitioned: a partition drops messages without shifting the stream.
    let mut partitioned_plan = plan_with_default(noisy());
    partitioned_plan.partition(1, 2);
    let healed = faults_with(partitioned_plan);
    let never_partitioned = faults_with(plan_with_default(noisy()));

    for _ in 0..100 {
        assert!(!healed.decide(1, 2).deliver);
        never_partitioned.decide(1, 2);
    }
    healed.update_plan(FaultPlan::heal).unwrap();
    assert_eq!(healed.plan(), plan_with_default(noisy()));
    assert_eq!(
        verdicts(&healed, &[(1, 2), (2, 1)], 200),
        verdicts(&never_partitioned, &[(1, 2), (2, 1)], 200)
    );
}

/// Sends `messages` over link 1->2 under `link_faults` and checks that each count is
/// within 10% of `expected` (exactly it, where that is 0). The seed is fixed, so the counts
/// are too: the tolerance is for a change of seed or of stream layout, not against flakes.
fn check_rates(link_faults: LinkFaults, messages: u64, expected: LinkCounters) {
    let faults = faults_with(plan_with_default(link_faults));
    for _ in 0..messages {
        faults.decide(1, 2);
    }
    let actual = faults.counters().links[&Link::new(1, 2)];
    let fields = |counters: LinkCounters| {
        let LinkCounters { delivered, dropped, delayed, duplicated, reordered } = counters;
        [
            ("delivered", delivered),
            ("dropped", dropped),
            ("delayed", delayed),
            ("duplicated", duplicated),
            ("reordered", reordered),
        ]
    };
    for ((name, expected), (_, actual_count)) in fields(expected).into_iter().zip(fields(actual)) {
        let tolerance = expected / 10;
        assert!(
            actual_count.abs_diff(expected) <= tolerance,
            "{name}: {actual_count}, expected {expected} ± {tolerance}; {actual:?}"
        );
    }
}

#[test]
fn rates_follow_the_probabilities() {
    // Over 10,000 messages each fault fires at about its probability.
    let none = LinkCounters::default();
    check_rates(
        LinkFaults { drop_probability: 0.3, ..LinkFaults::default() },
        10_000,
        LinkCounters { delivered: 7_000, dropped: 3_000, ..none },
    );
    // Duplicates and reorders are fractions of the 8,000 delivered, all of them delayed.
    check_rates(
        noisy(),
        10_000,
        LinkCounters { delivered: 8_000, dropped: 2_000, delayed: 8_000, duplicated: 800, reordered: 800 },
    );
    check_rates(
        LinkFaults { drop_probability: 1.0, ..LinkFaults::default() },
        1_000,
        LinkCounters { dropped: 1_000, ..none },
    );
}

#[test]
fn delays_stay_within_the_configured_range() {
    // With a fixed delay and uniform jitter every verdict's delay is in [delay, delay + jitter],
    // and both ends of the range occur.
    let faults =
        faults_with(plan_with_default(LinkFaults { delay_ms: 10, jitter_ms: 4, ..LinkFaults::default() }));
    let delays: Vec<u64> = (0..1_000).map(|_| faults.decide(1, 2).delay.as_millis() as u64).collect();
    assert!(delays.iter().all(|delay| (10..=14).contains(delay)));
    assert!(delays.contains(&10) && delays.contains(&14));
}

#[test]
fn invalid_plans_are_rejected_and_the_old_plan_kept() {
    // set_plan and update_plan refuse an invalid plan and leave the current one in place.
    let mut plan = FaultPlan::default();
    plan.partition(1, 2);
    let faults = faults_with(plan.clone());

    let mut invalid = FaultPlan::default();
    invalid.set_link(1, 2, LinkFaults { drop_probability: -1.0, ..LinkFaults::default() });
    let error = faults.set_plan(invalid).unwrap_err();
    assert_eq!(
        error,
        PlanError::Link {
            link: Link::new(1, 2),
            source: LinkFaultsError::ProbabilityOutOfRange { field: "drop_probability", value: -1.0 },
        }
    );
    assert_eq!(
        faults.update_plan(|plan| plan.partition_one_way(3, 3)),
        Err(PlanError::SelfLink { link: Link::new(3, 3) })
    );
    assert_eq!(faults.plan(), plan);
}

#[test]
fn clones_share_plan_and_counters() {
    // The transport and the admin RPC hold clones of one handle: a plan set through one is
    // used by the other, and both count into the same counters.
    let transport = Faults::new(SEED);
    let admin = transport.clone();
    let mut plan = FaultPlan::default();
    plan.partition_one_way(1, 2);
    admin.set_plan(plan).unwrap();
    assert!(!transport.decide(1, 2).deliver);
    assert_eq!(admin.counters().links[&Link::new(1, 2)].dropped, 1);
    assert_eq!(admin.seed(), SEED);
}

#[test]
fn counters_are_bounded() {
    // Beyond MAX_TRACKED_LINKS distinct links, messages are counted together as untracked.
    let faults = Faults::new(SEED);
    for to in 1..=MAX_TRACKED_LINKS as u64 + 2 {
        faults.decide(0, to);
    }
    faults.decide(0, 1);
    let counters = faults.counters();
    assert_eq!(counters.links.len(), MAX_TRACKED_LINKS);
    assert_eq!(counters.links[&Link::new(0, 1)].delivered, 2);
    assert_eq!(counters.untracked.delivered, 2);
}

#[test]
fn counters_print_as_json() {
    // The CLI prints counters as JSON keyed by `from->to`.
    let faults = Faults::new(SEED);
    faults.decide(1, 2);
    let json = serde_json::to_string(&faults.counters()).unwrap();
    assert!(json.starts_with(r#"{"links":{"1->2":{"delivered":1,"#), "{json}");
}
