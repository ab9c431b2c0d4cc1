//! Tests of the linearizability checker: small histories it must reject or accept, and
//! large generated ones that are linearizable by construction.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

const KEY: &str = "k";

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn write(value: &str) -> Op {
    Op::Write { key: bytes(KEY), value: bytes(value) }
}

fn read(value: Option<&str>) -> Op {
    Op::Read { key: bytes(KEY), value: value.map(bytes) }
}

fn delete() -> Op {
    Op::Delete { key: bytes(KEY) }
}

fn cas(expected: Option<&str>, new: &str, succeeded: bool) -> Op {
    Op::CompareAndSet { key: bytes(KEY), expected: expected.map(bytes), new: bytes(new), succeeded }
}

/// `op` on `key` instead of [`KEY`].
fn on(key: &str, op: Op) -> Op {
    let key = bytes(key);
    match op {
        Op::Read { value, .. } => Op::Read { key, value },
        Op::Write { value, .. } => Op::Write { key, value },
        Op::Delete { .. } => Op::Delete { key },
        Op::CompareAndSet { expected, new, succeeded, .. } => {
            Op::CompareAndSet { key, expected, new, succeeded }
        }
    }
}

fn ok(process: u64, invoke: u64, complete: u64, op: Op) -> Operation {
    Operation { process, invoke, complete, op, outcome: Outcome::Ok }
}

fn failed(process: u64, invoke: u64, complete: u64, op: Op) -> Operation {
    Operation { process, invoke, complete, op, outcome: Outcome::Failed }
}

fn unknown(process: u64, invoke: u64, op: Op) -> Operation {
    Operation { process, invoke, complete: 0, op, outcome: Outcome::Unknown }
}

fn history(operations: Vec<Operation>) -> History {
    let mut history = History::new();
    for operation in operations {
        history.push(operation);
    }
    history
}

#[derive(Debug, PartialEq)]
enum Expected {
    Linearizable,
    /// Not linearizable on [`KEY`].
    Violation,
}

fn check_history(operations: Vec<Operation>, expected: Expected) {
    let result = check(&history(operations.clone()));
    let actual = match &result {
        CheckResult::Linearizable => Expected::Linearizable,
        CheckResult::NotLinearizable { key, .. } if key == KEY => Expected::Violation,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(actual, expected, "history: {operations:#?}\nresult: {result:#?}");
}

#[test]
fn rejects_a_stale_read_after_a_completed_write() {
    // Once the write of 2 has completed, a later read cannot see the older 1.
    check_history(
        vec![ok(1, 0, 1, write("1")), ok(1, 2, 3, write("2")), ok(2, 4, 5, read(Some("1")))],
        Expected::Violation,
    );
}

#[test]
fn rejects_sequential_reads_that_go_back_in_time() {
    // The write of 2 is concurrent with both reads, so each alone may see 1 or 2; but once
    // the first read saw the new value, the second cannot see the old one. The other order
    // is fine.
    let prefix = [ok(1, 0, 1, write("1")), ok(1, 2, 10, write("2"))];
    let reads = |first, second| [ok(2, 3, 4, read(Some(first))), ok(2, 5, 6, read(Some(second)))];
    check_history([prefix.clone(), reads("2", "1")].concat(), Expected::Violation);
    check_history([prefix, reads("1", "2")].concat(), Expected::Linearizable);
}

#[test]
fn rejects_a_read_of_a_value_never_written() {
    // A value can only be read after some write of it.
    check_history(vec![ok(1, 0, 1, read(Some("7")))], Expected::Violation);
    check_history(vec![ok(1, 0, 1, write("1")), ok(2, 0, 5, read(Some("7")))], Expected::Violation);
}

#[test]
fn rejects_a_lost_acknowledged_write() {
    // An acknowledged write must be visible to a read that starts after it completed.
    check_history(vec![ok(1, 0, 1, write("1")), ok(2, 2, 3, read(None))], Expected::Violation);
}

#[test]
fn accepts_either_value_for_a_read_concurrent_with_a_write() {
    // A read overlapping a write may see the value before or after it.
    for seen in [None, Some("1")] {
        check_history(vec![ok(1, 0, 10, write("1")), ok(2, 2, 3, read(seen))], Expected::Linearizable);
    }
}

#[test]
fn treats_a_read_and_write_touching_at_an_instant_as_concurrent() {
    // Completion and invocation at the same time: the read may still see the old value.
    check_history(vec![ok(1, 0, 5, write("1")), ok(2, 5, 6, read(None))], Expected::Linearizable);
}

#[test]
fn failed_operations_never_take_effect() {
    // A failed write must not be seen; a failed read's value is ignored.
    check_history(vec![failed(1, 0, 1, write("1")), ok(2, 2, 3, read(None))], Expected::Linearizable);
    check_history(vec![failed(1, 0, 1, write("1")), ok(2, 2, 3, read(Some("1")))], Expected::Violation);
    check_history(vec![failed(1, 0, 1, read(Some("garbage")))], Expected::Linearizable);
}

#[test]
fn an_unknown_write_may_take_effect_later_or_never() {
    // A timed-out write may be seen long after, or never; but once seen it stays (nothing
    // overwrites it here), and it cannot take effect before it was invoked.
    let write_timed_out = || unknown(1, 0, write("1"));
    check_history(vec![write_timed_out(), ok(2, 50, 51, read(Some("1")))], Expected::Linearizable);
    check_history(vec![write_timed_out(), ok(2, 50, 51, read(None))], Expected::Linearizable);
    check_history(
        vec![write_timed_out(), ok(2, 50, 51, read(None)), ok(2, 60, 61, read(Some("1")))],
        Expected::Linearizable,
    );
    check_history(
        vec![write_timed_out(), ok(2, 50, 51, read(Some("1"))), ok(2, 60, 61, read(None))],
        Expected::Violation,
    );
    check_history(vec![ok(2, 0, 1, read(Some("1"))), unknown(1, 5, write("1"))], Expected::Violation);
    check_history(vec![unknown(1, 0, read(Some("garbage")))], Expected::Linearizable);
}

#[test]
fn an_unknown_write_may_land_after_a_later_write_but_only_once() {
    // The timed-out write of 1 may take effect after the write of 2 completed, so a read of
    // 1 after 2 is fine. But it takes effect at most once: after that read, the register
    // cannot go back to 2, nor return to 1 after a later write of 3.
    let prefix = || vec![unknown(1, 0, write("1")), ok(2, 1, 2, write("2")), ok(3, 3, 4, read(Some("1")))];
    check_history(prefix(), Expected::Linearizable);
    check_history([prefix(), vec![ok(3, 5, 6, read(Some("2")))]].concat(), Expected::Violation);
    check_history(
        [prefix(), vec![ok(2, 5, 6, write("3")), ok(3, 7, 8, read(Some("1")))]].concat(),
        Expected::Violation,
    );
    // Two timed-out writes of 1, though, may land on either side of the write of 3.
    check_history(
        [prefix(), vec![unknown(4, 0, write("1")), ok(2, 5, 6, write("3")), ok(3, 7, 8, read(Some("1")))]]
            .concat(),
        Expected::Linearizable,
    );
}

#[test]
fn compare_and_set_follows_the_register() {
    // A successful compare-and-set needs the expected value; an unsuccessful one needs any
    // other; two cannot both succeed from the same value.
    let first_set = || ok(1, 0, 1, cas(None, "1", true));
    check_history(vec![first_set(), ok(2, 2, 3, read(Some("1")))], Expected::Linearizable);
    check_history(vec![first_set(), ok(2, 2, 3, cas(None, "2", true))], Expected::Violation);
    check_history(vec![first_set(), ok(2, 2, 3, cas(None, "2", false))], Expected::Linearizable);
    check_history(vec![first_set(), ok(2, 2, 3, cas(Some("1"), "2", false))], Expected::Violation);
    check_history(
        vec![ok(1, 0, 10, cas(None, "1", true)), ok(2, 0, 10, cas(None, "2", true))],
        Expected::Violation,
    );
    check_history(
        vec![ok(1, 0, 10, cas(None, "1", true)), ok(2, 0, 10, cas(None, "2", false))],
        Expected::Linearizable,
    );
}

#[test]
fn an_unknown_compare_and_set_counts_only_if_it_could_succeed() {
    // A timed-out compare-and-set may have succeeded, whatever its recorded result, but only
    // if the register held the expected value at some point after its invocation.
    check_history(
        vec![unknown(1, 0, cas(None, "1", false)), ok(2, 5, 6, read(Some("1")))],
        Expected::Linearizable,
    );
    check_history(
        vec![ok(1, 0, 1, write("0")), unknown(1, 2, cas(Some("9"), "1", true)), ok(2, 5, 6, read(Some("1")))],
        Expected::Violation,
    );
}

#[test]
fn delete_makes_the_key_absent() {
    // After a completed delete the key reads as absent, not as its old value.
    let prefix = || vec![ok(1, 0, 1, write("1")), ok(1, 2, 3, delete())];
    check_history([prefix(), vec![ok(2, 4, 5, read(None))]].concat(), Expected::Linearizable);
    check_history([prefix(), vec![ok(2, 4, 5, read(Some("1")))]].concat(), Expected::Violation);
}

#[test]
fn keys_are_checked_independently() {
    // Operations on one key do not constrain another, and a violation names its key.
    let operations = vec![ok(1, 0, 1, on("a", write("1"))), ok(2, 2, 3, on("b", read(None)))];
    assert_eq!(check(&history(operations)), CheckResult::Linearizable);

    let operations = vec![
        ok(1, 0, 1, on("a", write("1"))),
        ok(1, 0, 1, on("b", write("1"))),
        ok(2, 2, 3, on("a", read(Some("1")))),
        ok(2, 2, 3, on("b", read(None))),
    ];
    assert!(matches!(check(&history(operations)), CheckResult::NotLinearizable { key, .. } if key == "b"));
}

#[test]
fn explanation_shows_where_the_search_got_stuck() {
    // For a stale read, the longest order is the two writes, the register holds 2, and the
    // read of 1 is the operation that cannot take effect.
    let operations = vec![ok(1, 0, 1, write("1")), ok(1, 2, 3, write("2")), ok(2, 4, 5, read(Some("1")))];
    let CheckResult::NotLinearizable { explanation, .. } = check(&history(operations.clone())) else {
        panic!("a stale read is a violation");
    };
    assert_eq!(explanation.linearized, operations[..2]);
    assert_eq!(explanation.value, Some(bytes("2")));
    assert_eq!(explanation.blocked, operations[2]);
    assert_eq!(explanation.pending, []);
    let text = explanation.to_string();
    assert!(text.contains("holds b\"2\""), "{text}");
    assert!(text.contains("process 2 read b\"k\" -> b\"1\" ok [4, 5]"), "{text}");
}

#[test]
fn search_limits_make_the_result_inconclusive() {
    // A search that runs out of steps or memo space says so instead of guessing, and a
    // violation on another key still wins over an inconclusive key.
    let writes: Vec<Operation> = (0..10).map(|i| ok(1, 2 * i, 2 * i + 1, on("a", write("1")))).collect();
    let tight = Limits { max_search_steps: 5, max_memo_words: MAX_MEMO_WORDS };
    assert_eq!(
        check_with_limits(&history(writes.clone()), tight),
        CheckResult::Inconclusive { key: bytes("a"), limit: SearchLimit::Steps }
    );
    let no_memory = Limits { max_search_steps: MAX_SEARCH_STEPS, max_memo_words: 1 };
    assert_eq!(
        check_with_limits(&history(writes.clone()), no_memory),
        CheckResult::Inconclusive { key: bytes("a"), limit: SearchLimit::Memory }
    );

    let never_written = ok(2, 0, 1, on("b", read(Some("7"))));
    let result = check_with_limits(&history([writes, vec![never_written]].concat()), tight);
    assert!(matches!(&result, CheckResult::NotLinearizable { key, .. } if key == "b"), "{result:?}");
}

#[test]
#[should_panic(expected = "completed before invoked")]
fn push_rejects_an_operation_that_completes_before_it_starts() {
    // A recorder bug, caught where it enters the history.
    History::new().push(ok(1, 5, 4, write("1")));
}

/// A history of `count` operations on `keys` keys, made by running each operation against
/// an in-memory map at a linearization point inside a random interval up to `width` to
/// either side, so it is linearizable by construction. Values come from a small set so
/// that reads are ambiguous; some operations fail and some time out (and then take effect
/// or not).
fn generate(seed: u64, count: u64, keys: u64, width: u64) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut store: BTreeMap<Bytes, Bytes> = BTreeMap::new();
    let mut history = History::new();
    for index in 0..count {
        let point = width + 100 * index;
        let invoke = point - rng.random_range(0..=width);
        let complete = point + rng.random_range(0..=width);
        let key = Bytes::from(format!("key-{}", rng.random_range(0..keys)));
        let outcome = match rng.random_range(0..20) {
            0 => Outcome::Failed,
            1 | 2 => Outcome::Unknown,
            _ => Outcome::Ok,
        };
        let takes_effect = match outcome {
            Outcome::Ok => true,
            Outcome::Failed => false,
            Outcome::Unknown => rng.random_bool(0.5),
        };
        let current = store.get(&key).cloned();
        let op = match rng.random_range(0..10) {
            0..=3 => {
                // A read that did not complete records a value the checker must ignore.
                let value = if takes_effect { current } else { Some(bytes("garbage")) };
                Op::Read { key, value }
            }
            4..=6 => {
                let value = random_value(&mut rng);
                if takes_effect {
                    store.insert(key.clone(), value.clone());
                }
                Op::Write { key, value }
            }
            7 => {
                if takes_effect {
                    store.remove(&key);
                }
                Op::Delete { key }
            }
            _ => {
                let expected =
                    if rng.random_bool(0.5) { current.clone() } else { Some(random_value(&mut rng)) };
                let new = random_value(&mut rng);
                let succeeded = expected == current;
                if takes_effect && succeeded {
                    store.insert(key.clone(), new.clone());
                }
                Op::CompareAndSet { key, expected, new, succeeded }
            }
        };
        history.push(Operation { process: index % 8, invoke, complete, op, outcome });
    }
    history
}

fn random_value(rng: &mut ChaCha8Rng) -> Bytes {
    Bytes::from(format!("v{}", rng.random_range(0..4)))
}

#[test]
fn accepts_generated_linearizable_histories() {
    // Histories made by running operations against a sequential map, with each operation's
    // interval around its real linearization point, are accepted: a few hundred operations
    // per key, several seeds, moderate and high overlap.
    for seed in 0..4 {
        let history = generate(seed, 600, 3, 1_000);
        assert_eq!(check(&history), CheckResult::Linearizable, "seed {seed}");
    }
    for seed in 0..2 {
        let history = generate(seed, 300, 1, 800);
        assert_eq!(check(&history), CheckResult::Linearizable, "seed {seed}, one key");
    }
}

#[test]
fn rejects_a_generated_history_with_one_corrupted_read() {
    // The same generated history with one completed read changed to a value nobody wrote
    // is rejected, on that read's key.
    let original = generate(7, 600, 3, 1_000);
    let mut operations = original.operations().to_vec();
    let corrupted = operations
        .iter()
        .position(|operation| matches!(operation.op, Op::Read { .. }) && operation.outcome == Outcome::Ok)
        .expect("the generated history has completed reads");
    let Op::Read { key, value } = &mut operations[corrupted].op else { unreachable!() };
    *value = Some(bytes("never written"));
    let key = key.clone();
    let result = check(&history(operations));
    assert!(matches!(&result, CheckResult::NotLinearizable { key: bad, .. } if *bad == key), "{result:?}");
}

/// Whether `operations` (all on one key) are linearizable, straight from the definition:
/// try every order of the operations that took effect, leaving out any subset of the
/// unknown ones, in which no operation precedes one that completed before it was invoked.
/// Exponential, so only for a handful of operations.
fn brute_force(operations: &[Operation]) -> bool {
    let relevant: Vec<&Operation> = operations
        .iter()
        .filter(|operation| match operation.outcome {
            Outcome::Ok => true,
            Outcome::Failed => false,
            Outcome::Unknown => !matches!(operation.op, Op::Read { .. }),
        })
        .collect();
    place(&relevant, &mut vec![false; relevant.len()], None)
}

fn place(operations: &[&Operation], placed: &mut Vec<bool>, value: Option<Bytes>) -> bool {
    let must_place = |placed: &[bool], j: usize| !placed[j] && operations[j].outcome == Outcome::Ok;
    if !(0..operations.len()).any(|j| must_place(placed, j)) {
        return true;
    }
    for next in 0..operations.len() {
        // `next` may come now only if no operation still to be placed completed before it began.
        let overtakes = (0..operations.len())
            .any(|j| j != next && must_place(placed, j) && operations[j].complete < operations[next].invoke);
        if placed[next] || overtakes {
            continue;
        }
        let unknown = operations[next].outcome == Outcome::Unknown;
        let after = match &operations[next].op {
            Op::Read { value: seen, .. } => (*seen == value).then(|| value.clone()),
            Op::Write { value: new, .. } => Some(Some(new.clone())),
            Op::Delete { .. } => Some(None),
            Op::CompareAndSet { expected, new, succeeded, .. } => {
                match (*succeeded || unknown, *expected == value) {
                    (true, true) => Some(Some(new.clone())),
                    (false, false) => Some(value.clone()),
                    _ => None,
                }
            }
        };
        if let Some(after) = after {
            placed[next] = true;
            let found = place(operations, placed, after);
            placed[next] = false;
            if found {
                return true;
            }
        }
    }
    false
}

/// A random history of up to 6 operations on [`KEY`] with random intervals and values: not
/// linearizable by construction, just small.
fn random_small_history(rng: &mut ChaCha8Rng) -> Vec<Operation> {
    let value = |rng: &mut ChaCha8Rng| ["1", "2"][rng.random_range(0..2)];
    let maybe_value = |rng: &mut ChaCha8Rng| if rng.random_bool(0.3) { None } else { Some(value(rng)) };
    (0..rng.random_range(1..=6))
        .map(|process| {
            let invoke = rng.random_range(0..10);
            let complete = invoke + rng.random_range(0..5);
            let op = match rng.random_range(0..7) {
                0..=2 => read(maybe_value(rng)),
                3 | 4 => write(value(rng)),
                5 => delete(),
                _ => cas(maybe_value(rng), value(rng), rng.random_bool(0.5)),
            };
            let outcome = match rng.random_range(0..8) {
                0 => Outcome::Failed,
                1 | 2 => Outcome::Unknown,
                _ => Outcome::Ok,
            };
            Operation { process, invoke, complete, op, outcome }
        })
        .collect()
}

#[test]
fn agrees_with_brute_force_on_small_histories() {
    // On thousands of small random histories the search and an exhaustive search straight
    // from the definition give the same verdict, and both verdicts occur often.
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut verdicts = [0; 2];
    for _ in 0..3_000 {
        let operations = random_small_history(&mut rng);
        let expected = brute_force(&operations);
        let actual = check(&history(operations.clone()));
        assert_eq!(actual == CheckResult::Linearizable, expected, "{operations:#?}\n{actual:#?}");
        verdicts[usize::from(expected)] += 1;
    }
    assert!(verdicts.iter().all(|&count| count > 500), "{verdicts:?}");
}
