//! The check a transaction passes before it runs: no key may be written twice in one revision.
//!
//! Within one branch, nested transactions included (they run in the same revision), two puts of
//! one key, or a put of a key that a delete of the branch covers, would give the key two
//! versions at one revision. As etcd does (`checkIntervals`), both branches of the request are
//! checked whatever its compares will decide, so whether a request is valid does not depend on
//! the store's state; and the two branches of one nested transaction exclude each other, so they
//! may write the same key.
//!
//! One deliberate difference: etcd checks sibling nested transactions against each other only
//! in one order, so it accepts a put in one nested transaction and a delete of the same key in a
//! later one, and then writes the key twice at one revision. Here any two operations of a branch
//! are checked against each other, whatever their order.

use bytes::Bytes;

use super::MvccError;
use crate::request::{KeyRange, RequestOp, TxnRequest};

/// What a list of operations may write, over every branch of its nested transactions.
#[derive(Default)]
struct Footprint<'a> {
    puts: Vec<&'a Bytes>,
    deletes: Vec<&'a KeyRange>,
}

pub(super) fn check_no_duplicate_writes(request: &TxnRequest) -> Result<(), MvccError> {
    branch_footprint(&request.success)?;
    branch_footprint(&request.failure)?;
    Ok(())
}

/// Checks the operations of one branch against each other and returns what they may write.
///
/// Quadratic in the number of operations, which is fine: the API layer bounds a transaction's
/// size (etcd's default is 128 operations).
fn branch_footprint(ops: &[RequestOp]) -> Result<Footprint<'_>, MvccError> {
    let parts = ops.iter().map(op_footprint).collect::<Result<Vec<_>, _>>()?;
    for (index, part) in parts.iter().enumerate() {
        let others = parts.iter().enumerate().filter(|(other, _)| *other != index);
        for (_, other) in others {
            if part.puts.iter().any(|key| other.writes(key)) {
                return Err(MvccError::DuplicateKeyInTxn);
            }
        }
    }
    let mut branch = Footprint::default();
    for part in parts {
        branch.puts.extend(part.puts);
        branch.deletes.extend(part.deletes);
    }
    Ok(branch)
}

fn op_footprint(op: &RequestOp) -> Result<Footprint<'_>, MvccError> {
    Ok(match op {
        RequestOp::Range(_) => Footprint::default(),
        RequestOp::Put(put) => Footprint { puts: vec![&put.key], deletes: Vec::new() },
        RequestOp::DeleteRange(delete) => Footprint { puts: Vec::new(), deletes: vec![&delete.range] },
        RequestOp::Txn(txn) => {
            let mut footprint = branch_footprint(&txn.success)?;
            let failure = branch_footprint(&txn.failure)?;
            footprint.puts.extend(failure.puts);
            footprint.deletes.extend(failure.deletes);
            footprint
        }
    })
}

impl Footprint<'_> {
    fn writes(&self, key: &[u8]) -> bool {
        self.puts.iter().any(|put| put.as_ref() == key)
            || self.deletes.iter().any(|range| range.contains(key))
    }
}
