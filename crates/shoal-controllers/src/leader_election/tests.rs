use std::time::Duration;

use super::{ElectionConfig, Seen, Step, decide, still_leading};

fn config() -> ElectionConfig {
    ElectionConfig::new("kube-scheduler")
}

fn held_by(holder: &str) -> Seen {
    Seen { holder: holder.into(), resource_version: "7".into() }
}

const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[test]
fn a_missing_lease_is_created() {
    assert_eq!(decide(None, ms(0), ms(0), "me", &config()), Step::Acquire);
}

#[test]
fn a_released_lease_is_taken_at_once() {
    assert_eq!(decide(Some(&held_by("")), ms(1000), ms(1000), "me", &config()), Step::Acquire);
}

#[test]
fn the_holder_renews() {
    assert_eq!(decide(Some(&held_by("me")), ms(0), ms(5000), "me", &config()), Step::Renew);
}

#[test]
fn another_holder_is_waited_out_for_a_whole_lease_duration_after_the_last_change_seen() {
    let config = config();
    let lease = held_by("other");
    let changed_at = ms(10_000);
    assert_eq!(decide(Some(&lease), changed_at, changed_at, "me", &config), Step::Wait);
    let just_before = changed_at + config.lease_duration - ms(1);
    assert_eq!(decide(Some(&lease), changed_at, just_before, "me", &config), Step::Wait);
    let expired = changed_at + config.lease_duration;
    assert_eq!(decide(Some(&lease), changed_at, expired, "me", &config), Step::Acquire);
}

#[test]
fn a_leader_stops_acting_before_a_candidate_may_take_over() {
    let config = config();
    config.check().expect("the defaults are consistent");
    let renewed_at = ms(3000);
    assert!(still_leading(renewed_at, renewed_at + config.renew_deadline - ms(1), &config));
    assert!(!still_leading(renewed_at, renewed_at + config.renew_deadline, &config));
    // A candidate sees the renewal no earlier than it was sent, so it may take the Lease no
    // earlier than `renewed_at + lease_duration`: after the leader stopped.
    let candidate_may_take_at = renewed_at + config.lease_duration;
    assert!(!still_leading(renewed_at, candidate_may_take_at, &config));
}

#[test]
fn inconsistent_timings_are_refused() {
    let mut config = config();
    config.renew_deadline = config.lease_duration;
    assert!(config.check().is_err());
    let mut config = ElectionConfig::new("kube-scheduler");
    config.retry_period = config.renew_deadline;
    assert!(config.check().is_err());
}
