//! The clients' history of a simulated run: what each client asked of which member, when, and
//! what it learned; and how one request runs against a member's `Store`.
//!
//! Times are the simulation's clock (turmoil's `sim_elapsed`), shared by every host: a message
//! takes at least one simulation step to cross the network, so an operation that completed
//! before another was invoked, by this clock, really did happen before it.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use shoal_store::command::{CommandError, Operation, Outcome};
use shoal_store::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyRange, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use shoal_store::store::{Consistency, Store, WriteError};

use crate::linearizability::{self, History, Op};

/// What a client asks of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Put {
        key: Bytes,
        value: Bytes,
    },
    /// A linearizable read.
    Get {
        key: Bytes,
    },
    /// A transaction: if `key` holds `expected` (`None`: absent), put `new`.
    CompareAndSet {
        key: Bytes,
        expected: Option<Bytes>,
        new: Bytes,
    },
    Delete {
        key: Bytes,
    },
}

/// What a client learned from its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A put or delete took effect.
    Done,
    /// A read saw this value (`None`: absent).
    Read(Option<Bytes>),
    /// A compare-and-set took effect; whether its compare held.
    Swapped(bool),
    /// Certainly not applied (a write), or no answer (a read).
    Failed,
    /// Maybe applied, maybe not.
    Unknown,
}

/// One request of one client.
#[derive(Clone, Debug)]
pub struct Record {
    pub process: u64,
    /// The member the client asked.
    pub member: usize,
    pub request: Request,
    /// When the member started on it, in simulated nanoseconds; `None` if it never did (the
    /// member crashed with the request still queued).
    pub invoke_ns: Option<u64>,
    /// When the client got its answer, and the answer; `None` if it never did (the member
    /// crashed meanwhile), which counts as `Answer::Unknown`.
    pub completion: Option<(u64, Answer)>,
}

/// The shared, append-only record of every request; the simulation is single-threaded, so
/// members' tasks and the harness share it through an `Rc`.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    records: Rc<RefCell<Vec<Record>>>,
}

/// Identifies a request in its [`Recorder`].
pub type RequestId = usize;

impl Recorder {
    /// Records a request a client is about to send to `member`.
    pub fn issue(&self, process: u64, member: usize, request: Request) -> RequestId {
        let mut records = self.records.borrow_mut();
        records.push(Record { process, member, request, invoke_ns: None, completion: None });
        records.len() - 1
    }

    pub fn invoked(&self, id: RequestId, now_ns: u64) {
        let mut records = self.records.borrow_mut();
        assert!(records[id].invoke_ns.is_none(), "request {id} invoked twice");
        records[id].invoke_ns = Some(now_ns);
    }

    pub fn completed(&self, id: RequestId, now_ns: u64, answer: Answer) {
        let mut records = self.records.borrow_mut();
        assert!(records[id].completion.is_none(), "request {id} completed twice");
        records[id].completion = Some((now_ns, answer));
    }

    pub fn request(&self, id: RequestId) -> Request {
        self.records.borrow()[id].request.clone()
    }

    pub fn is_completed(&self, id: RequestId) -> bool {
        self.records.borrow()[id].completion.is_some()
    }

    pub fn records(&self) -> Vec<Record> {
        self.records.borrow().clone()
    }

    /// The history for the linearizability checker: every request a member started on.
    pub fn to_history(&self) -> History {
        let mut history = History::new();
        for record in self.records.borrow().iter() {
            let Some(invoke) = record.invoke_ns else { continue };
            let (complete, answer) = record.completion.clone().unwrap_or((invoke, Answer::Unknown));
            history.push(operation(record, invoke, complete, answer));
        }
        history
    }
}

fn operation(record: &Record, invoke: u64, complete: u64, answer: Answer) -> linearizability::Operation {
    use linearizability::Outcome;
    let outcome = match answer {
        Answer::Done | Answer::Read(_) | Answer::Swapped(_) => Outcome::Ok,
        Answer::Failed => Outcome::Failed,
        Answer::Unknown => Outcome::Unknown,
    };
    let op = match (&record.request, answer) {
        (Request::Put { key, value }, _) => Op::Write { key: key.clone(), value: value.clone() },
        (Request::Get { key }, Answer::Read(value)) => Op::Read { key: key.clone(), value },
        (Request::Get { key }, _) => Op::Read { key: key.clone(), value: None },
        (Request::CompareAndSet { key, expected, new }, answer) => Op::CompareAndSet {
            key: key.clone(),
            expected: expected.clone(),
            new: new.clone(),
            succeeded: answer == Answer::Swapped(true),
        },
        (Request::Delete { key }, _) => Op::Delete { key: key.clone() },
    };
    linearizability::Operation { process: record.process, invoke, complete, op, outcome }
}

/// Runs `request` against `store`, as a client of that member would.
pub async fn execute(store: &Store, request: &Request) -> Answer {
    match request {
        Request::Put { key, value } => {
            let put = PutRequest { key: key.clone(), value: value.clone(), ..PutRequest::default() };
            write_answer(store.write(Operation::Put(put)).await.map(|_| Answer::Done))
        }
        Request::Get { key } => {
            let range = RangeRequest { range: KeyRange::key(key.clone()), ..RangeRequest::default() };
            match store.range(&range, Consistency::Linearizable).await {
                Ok((response, _)) => Answer::Read(response.kvs.first().map(|kv| kv.value.clone())),
                // A read that did not answer constrains nothing.
                Err(_) => Answer::Failed,
            }
        }
        Request::CompareAndSet { key, expected, new } => {
            let txn = compare_and_set(key, expected.as_ref(), new);
            let result = store.write(Operation::Txn(txn)).await.map(|response| match response.outcome {
                Ok(Outcome::Txn(txn)) => Answer::Swapped(txn.succeeded),
                other => panic!("a transaction answered with {other:?}"),
            });
            write_answer(result)
        }
        Request::Delete { key } => {
            let delete = DeleteRangeRequest { range: KeyRange::key(key.clone()), prev_kv: false };
            write_answer(store.write(Operation::DeleteRange(delete)).await.map(|_| Answer::Done))
        }
    }
}

/// `key`'s value is `expected` (a missing key has version 0) → put `new`.
fn compare_and_set(key: &Bytes, expected: Option<&Bytes>, new: &Bytes) -> TxnRequest {
    let target = match expected {
        Some(value) => CompareTarget::Value(value.clone()),
        None => CompareTarget::Version(0),
    };
    let compare = Compare { range: KeyRange::key(key.clone()), result: CompareResult::Equal, target };
    let put = PutRequest { key: key.clone(), value: new.clone(), ..PutRequest::default() };
    TxnRequest { compare: vec![compare], success: vec![RequestOp::Put(put)], failure: vec![] }
}

/// What a write's error tells the client, as `WriteError` documents it.
fn write_answer(result: Result<Answer, WriteError>) -> Answer {
    match result {
        Ok(answer) => answer,
        // A sequence answered and then forgotten may have been applied by an earlier attempt.
        Err(WriteError::Rejected(CommandError::StaleSequence { .. })) => Answer::Unknown,
        Err(WriteError::Rejected(_) | WriteError::NoLeader) => Answer::Failed,
        Err(WriteError::OutcomeUnknown | WriteError::Stopping) => Answer::Unknown,
    }
}
