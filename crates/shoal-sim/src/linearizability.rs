//! A linearizability checker for recorded key-value histories: the Wing–Gong search as
//! refined by Lowe, with memoization, one key at a time.
//!
//! Each key is a register that starts absent. A history is linearizable when every
//! operation can be given one point in time between its invocation and its completion such
//! that, taken in that order, each operation behaves as on a single sequential register.
//! Linearizability is compositional (a history is linearizable exactly when each key's
//! sub-history is), so keys are checked independently, which keeps the searches small.
//!
//! Outcomes: an `Ok` operation took effect between its invocation and completion. A `Failed`
//! operation certainly did not take effect and is left out. An `Unknown` operation (timed
//! out) may or may not have taken effect, and if it did, at any time after its invocation:
//! its completion is taken as +infinity and the search may leave it out. An unknown read
//! constrains nothing and is left out; an unknown compare-and-set that took effect is one
//! that succeeded.
//!
//! The search: walk the events (invocations and completions) in time order; at an
//! invocation, try to linearize that operation now if the register allows it, and go on
//! from the start; at the completion of an operation not yet linearized, undo the last
//! choice and try the next candidate. A (linearized set, register value) pair already
//! explored is never explored again, which is what keeps the search tractable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use bytes::Bytes;

/// Search steps per key after which the check gives up as inconclusive. A history of a few
/// hundred operations per key with realistic concurrency needs a few thousand.
pub const MAX_SEARCH_STEPS: u64 = 1 << 22;

/// The memo's size limit per key, in 64-bit words of linearized-set bitsets (128 MiB):
/// each explored configuration holds one bit per operation of the key.
pub const MAX_MEMO_WORDS: usize = 1 << 24;

/// The most operations of the linearized prefix an [`Explanation`] prints.
const EXPLANATION_PREFIX_SHOWN: usize = 10;

/// One recorded client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client (process) that issued it; used only to explain a failed check.
    pub process: u64,
    /// When the client sent it.
    pub invoke: u64,
    /// When the client got its answer; ignored unless the outcome is `Ok`.
    pub complete: u64,
    pub op: Op,
    pub outcome: Outcome,
}

/// What an operation did, with what it observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read `key` and saw `value` (`None`: absent).
    Read {
        key: Bytes,
        value: Option<Bytes>,
    },
    Write {
        key: Bytes,
        value: Bytes,
    },
    Delete {
        key: Bytes,
    },
    /// Set `key` to `new` if it held `expected` (`None`: absent); `succeeded` says whether it
    /// did, and is ignored unless the outcome is `Ok`.
    CompareAndSet {
        key: Bytes,
        expected: Option<Bytes>,
        new: Bytes,
        succeeded: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Took effect at some point between invocation and completion.
    Ok,
    /// Certainly did not take effect.
    Failed,
    /// May have taken effect, at any time after its invocation.
    Unknown,
}

/// A recorded history, in any order.
#[derive(Clone, Debug, Default)]
pub struct History {
    operations: Vec<Operation>,
}

/// The verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    Linearizable,
    /// The operations on `key` cannot be ordered; the first such key in key order.
    NotLinearizable {
        key: Bytes,
        explanation: Box<Explanation>,
    },
    /// No violation found, but the search on `key` hit `limit` before it could decide.
    Inconclusive {
        key: Bytes,
        limit: SearchLimit,
    },
}

/// Which limit stopped an inconclusive search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchLimit {
    Steps,
    Memory,
}

/// The limits of one key's search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_search_steps: u64,
    pub max_memo_words: usize,
}

/// Where the search got furthest before failing: the longest order it found, and the
/// operation that then had to take effect but could not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The longest sequence of operations the search could linearize, in order.
    pub linearized: Vec<Operation>,
    /// The register's value after `linearized`.
    pub value: Option<Bytes>,
    /// The operation whose completion came next, yet which could not take effect, nor could
    /// any order of `pending` lead to a state where it could.
    pub blocked: Operation,
    /// The other operations invoked before `blocked` completed and not yet linearized.
    pub pending: Vec<Operation>,
}

/// Checks `history` with the default limits.
pub fn check(history: &History) -> CheckResult {
    check_with_limits(history, Limits::default())
}

/// Checks `history` key by key. A violation on any key wins over an inconclusive key.
pub fn check_with_limits(history: &History, limits: Limits) -> CheckResult {
    let mut by_key: BTreeMap<&Bytes, Vec<&Operation>> = BTreeMap::new();
    for operation in &history.operations {
        by_key.entry(operation.op.key()).or_default().push(operation);
    }
    let mut inconclusive = None;
    for (key, operations) in by_key {
        let key_history = KeyHistory::new(operations);
        match key_history.search(limits) {
            SearchOutcome::Linearizable => {}
            SearchOutcome::Stuck(deepest) => {
                let explanation = Box::new(key_history.explain(&deepest));
                return CheckResult::NotLinearizable { key: key.clone(), explanation };
            }
            SearchOutcome::Limit(limit) => {
                inconclusive.get_or_insert(CheckResult::Inconclusive { key: key.clone(), limit });
            }
        }
    }
    inconclusive.unwrap_or(CheckResult::Linearizable)
}

impl History {
    pub fn new() -> Self {
        History::default()
    }

    /// Records `operation`. Panics if an `Ok` operation completed before it was invoked: the
    /// recorder is broken.
    pub fn push(&mut self, operation: Operation) {
        if operation.outcome == Outcome::Ok {
            assert!(operation.invoke <= operation.complete, "completed before invoked: {operation}");
        }
        self.operations.push(operation);
    }

    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }
}

impl Op {
    pub fn key(&self) -> &Bytes {
        match self {
            Op::Read { key, .. }
            | Op::Write { key, .. }
            | Op::Delete { key }
            | Op::CompareAndSet { key, .. } => key,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_search_steps: MAX_SEARCH_STEPS, max_memo_words: MAX_MEMO_WORDS }
    }
}

/// Index of an interned register value; `ABSENT` is the absent key.
type ValueId = u32;
const ABSENT: ValueId = 0;

/// No node: the end of the event list.
const NIL: usize = usize::MAX;

/// What an operation requires of the register and does to it.
#[derive(Clone, Copy, Debug)]
enum Action {
    Read(ValueId),
    Write(ValueId),
    CompareAndSet { expected: ValueId, new: ValueId, succeeded: bool },
}

/// The operations on one key that constrain the search, with interned values.
struct KeyHistory<'h> {
    operations: Vec<&'h Operation>,
    actions: Vec<Action>,
    /// Unknown outcome: the search may leave it out.
    optional: Vec<bool>,
    /// Interned values; `ValueId` `i > 0` is `values[i - 1]`.
    values: Vec<Bytes>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventKind {
    Invoke,
    Complete,
}

#[derive(Clone, Copy, Debug)]
struct Event {
    operation: usize,
    kind: EventKind,
}

enum SearchOutcome {
    Linearizable,
    Stuck(Deepest),
    Limit(SearchLimit),
}

/// The furthest the search got: indexes into `KeyHistory::operations`.
struct Deepest {
    linearized: Vec<usize>,
    value: ValueId,
    blocked: usize,
    pending: Vec<usize>,
}

/// The events of one key in time order as a doubly linked list, so that linearizing an
/// operation unlinks its two events and backtracking relinks them in O(1) (dancing links).
struct EventList {
    events: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
    invoke_node: Vec<usize>,
    complete_node: Vec<usize>,
}

/// The set of linearized operations, one bit each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl<'h> KeyHistory<'h> {
    fn new(candidates: Vec<&'h Operation>) -> Self {
        let mut history =
            KeyHistory { operations: vec![], actions: vec![], optional: vec![], values: vec![] };
        let mut interned = HashMap::new();
        for operation in candidates {
            let unknown = match operation.outcome {
                Outcome::Ok => false,
                Outcome::Unknown => true,
                Outcome::Failed => continue,
            };
            let mut intern = |value: Option<&Bytes>| history.intern(&mut interned, value);
            let action = match &operation.op {
                Op::Read { .. } if unknown => continue,
                Op::Read { value, .. } => Action::Read(intern(value.as_ref())),
                Op::Write { value, .. } => Action::Write(intern(Some(value))),
                Op::Delete { .. } => Action::Write(ABSENT),
                Op::CompareAndSet { expected, new, succeeded, .. } => Action::CompareAndSet {
                    expected: intern(expected.as_ref()),
                    new: intern(Some(new)),
                    succeeded: *succeeded || unknown,
                },
            };
            history.operations.push(operation);
            history.actions.push(action);
            history.optional.push(unknown);
        }
        history
    }

    fn intern(&mut self, interned: &mut HashMap<Bytes, ValueId>, value: Option<&Bytes>) -> ValueId {
        let Some(value) = value else { return ABSENT };
        *interned.entry(value.clone()).or_insert_with(|| {
            self.values.push(value.clone());
            ValueId::try_from(self.values.len()).expect("fewer than 2^32 values per key")
        })
    }

    /// Lowe's search: see the module documentation.
    fn search(&self, limits: Limits) -> SearchOutcome {
        let count = self.operations.len();
        let mut list = EventList::new(self);
        let mut linearized = Bitset::new(count);
        let mut memo: HashSet<(Bitset, ValueId)> = HashSet::new();
        // The operations linearized so far, each with the register value before it.
        let mut stack: Vec<(usize, ValueId)> = Vec::with_capacity(count);
        let mut value = ABSENT;
        let mut deepest: Option<Deepest> = None;
        let mut node = list.first();
        for _ in 0..limits.max_search_steps {
            if node == NIL {
                return SearchOutcome::Linearizable;
            }
            let event = list.events[node];
            let operation = event.operation;
            if event.kind == EventKind::Invoke {
                if let Some(next_value) = apply(self.actions[operation], value) {
                    linearized.insert(operation);
                    if memo.len().saturating_mul(linearized.0.len()) >= limits.max_memo_words {
                        return SearchOutcome::Limit(SearchLimit::Memory);
                    }
                    if memo.insert((linearized.clone(), next_value)) {
                        stack.push((operation, value));
                        value = next_value;
                        list.lift(operation);
                        node = list.first();
                        continue;
                    }
                    linearized.remove(operation);
                }
                node = list.next[node];
                continue;
            }
            // A completion, so every operation it could still follow has been tried.
            if self.optional[operation] {
                // Completions of unknown operations come last, so every operation that must
                // take effect has; the unknown ones left over need not.
                return SearchOutcome::Linearizable;
            }
            if deepest.as_ref().is_none_or(|deepest| stack.len() > deepest.linearized.len()) {
                deepest = Some(Deepest {
                    linearized: stack.iter().map(|&(operation, _)| operation).collect(),
                    value,
                    blocked: operation,
                    pending: list
                        .invoked_before(node)
                        .into_iter()
                        .filter(|&other| other != operation)
                        .collect(),
                });
            }
            let Some((undone, previous_value)) = stack.pop() else {
                return SearchOutcome::Stuck(deepest.expect("recorded just above"));
            };
            value = previous_value;
            linearized.remove(undone);
            list.unlift(undone);
            node = list.next[list.invoke_node[undone]];
        }
        SearchOutcome::Limit(SearchLimit::Steps)
    }

    fn explain(&self, deepest: &Deepest) -> Explanation {
        let operations = |indexes: &[usize]| indexes.iter().map(|&i| self.operations[i].clone()).collect();
        Explanation {
            linearized: operations(&deepest.linearized),
            value: self.value(deepest.value),
            blocked: self.operations[deepest.blocked].clone(),
            pending: operations(&deepest.pending),
        }
    }

    fn value(&self, id: ValueId) -> Option<Bytes> {
        (id != ABSENT).then(|| self.values[id as usize - 1].clone())
    }
}

/// The sequential register: the value after `action`, or `None` if `action` cannot happen
/// when the register holds `value`.
fn apply(action: Action, value: ValueId) -> Option<ValueId> {
    match action {
        Action::Read(seen) => (seen == value).then_some(value),
        Action::Write(new) => Some(new),
        Action::CompareAndSet { expected, new, succeeded: true } => (expected == value).then_some(new),
        Action::CompareAndSet { expected, succeeded: false, .. } => (expected != value).then_some(value),
    }
}

impl EventList {
    /// Sorts the events by time. At equal times invocations come first, so operations that
    /// touch at an instant count as concurrent (the lenient reading of a tie); completions of
    /// unknown operations come after everything else.
    fn new(history: &KeyHistory<'_>) -> Self {
        let mut keyed = Vec::with_capacity(2 * history.operations.len());
        for (index, operation) in history.operations.iter().enumerate() {
            keyed.push(((false, operation.invoke, 0), Event { operation: index, kind: EventKind::Invoke }));
            let never = history.optional[index];
            let complete = if never { 0 } else { operation.complete };
            keyed.push(((never, complete, 1), Event { operation: index, kind: EventKind::Complete }));
        }
        keyed.sort_by_key(|(time, event)| (*time, event.operation));

        // Node `events.len()` is the head, before the first event.
        let head = keyed.len();
        let mut list = EventList {
            events: keyed.into_iter().map(|(_, event)| event).collect(),
            next: (1..=head).map(|next| if next == head { NIL } else { next }).collect(),
            prev: (0..head).map(|node| if node == 0 { head } else { node - 1 }).collect(),
            invoke_node: vec![NIL; history.operations.len()],
            complete_node: vec![NIL; history.operations.len()],
        };
        list.next.push(if head == 0 { NIL } else { 0 });
        list.prev.push(NIL);
        for (node, event) in list.events.iter().enumerate() {
            match event.kind {
                EventKind::Invoke => list.invoke_node[event.operation] = node,
                EventKind::Complete => list.complete_node[event.operation] = node,
            }
        }
        list
    }

    fn first(&self) -> usize {
        self.next[self.events.len()]
    }

    /// Takes `operation`'s two events out of the list.
    fn lift(&mut self, operation: usize) {
        self.unlink(self.invoke_node[operation]);
        self.unlink(self.complete_node[operation]);
    }

    /// Undoes the latest `lift`, which must have been of `operation`.
    fn unlift(&mut self, operation: usize) {
        self.relink(self.complete_node[operation]);
        self.relink(self.invoke_node[operation]);
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    /// The operations whose invocations are still listed before `end`.
    fn invoked_before(&self, end: usize) -> Vec<usize> {
        let mut operations = vec![];
        let mut node = self.first();
        while node != end {
            if self.events[node].kind == EventKind::Invoke {
                operations.push(self.events[node].operation);
            }
            node = self.next[node];
        }
        operations
    }
}

impl Bitset {
    fn new(bits: usize) -> Self {
        Bitset(vec![0; bits.div_ceil(64).max(1)])
    }

    fn insert(&mut self, bit: usize) {
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    fn remove(&mut self, bit: usize) {
        self.0[bit / 64] &= !(1 << (bit % 64));
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {} {} ", self.process, self.op)?;
        match self.outcome {
            Outcome::Ok => write!(f, "ok [{}, {}]", self.invoke, self.complete),
            Outcome::Failed => write!(f, "failed [{}, {}]", self.invoke, self.complete),
            Outcome::Unknown => write!(f, "unknown [{}, ∞)", self.invoke),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Read { key, value } => write!(f, "read {key:?} -> {}", Shown(value.as_ref())),
            Op::Write { key, value } => write!(f, "write {key:?} := {value:?}"),
            Op::Delete { key } => write!(f, "delete {key:?}"),
            Op::CompareAndSet { key, expected, new, succeeded } => {
                let result = if *succeeded { "succeeded" } else { "did not succeed" };
                write!(f, "compare-and-set {key:?} {} -> {new:?} ({result})", Shown(expected.as_ref()))
            }
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.linearized.len().min(EXPLANATION_PREFIX_SHOWN);
        writeln!(f, "the longest order found has {} operations; its last {shown}:", self.linearized.len())?;
        for operation in &self.linearized[self.linearized.len() - shown..] {
            writeln!(f, "  {operation}")?;
        }
        let value = Shown(self.value.as_ref());
        writeln!(f, "after which the register holds {value}, and this operation cannot take effect:")?;
        write!(f, "  {}", self.blocked)?;
        if !self.pending.is_empty() {
            write!(f, "\nnor can it after any order of these concurrent operations:")?;
            for operation in &self.pending {
                write!(f, "\n  {operation}")?;
            }
        }
        Ok(())
    }
}

/// A register value for people: the bytes, or "absent".
struct Shown<'a>(Option<&'a Bytes>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value:?}"),
            None => write!(f, "absent"),
        }
    }
}

#[cfg(test)]
mod tests;
