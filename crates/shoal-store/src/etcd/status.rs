//! shoal's errors as etcd's gRPC statuses.
//!
//! etcd clients recognise errors by their exact message (`rpctypes.ErrCompacted` and its
//! kin), so the messages of known conditions are etcd's, word for word. Whether a failed write
//! may have been applied is part of each message.

use tonic::Status;

use crate::command::CommandError;
use crate::etcd::proto::etcdserverpb::ResponseHeader;
use crate::mvcc::{MvccError, Revision};
use crate::store::{AdminError, ReadError, Store, WriteError};

pub fn header(store: &Store, revision: Revision) -> ResponseHeader {
    ResponseHeader {
        cluster_id: store.identity().cluster_id,
        member_id: store.id(),
        revision,
        raft_term: store.current_term(),
    }
}

pub fn mvcc_status(error: &MvccError) -> Status {
    match error {
        MvccError::Compacted { .. } => {
            Status::out_of_range("etcdserver: mvcc: required revision has been compacted")
        }
        MvccError::FutureRevision { .. } => {
            Status::out_of_range("etcdserver: mvcc: required revision is a future revision")
        }
        MvccError::DuplicateKeyInTxn | MvccError::KeyNotFound | MvccError::EmptyKey => {
            Status::invalid_argument(error.to_string())
        }
    }
}

pub fn write_status(error: WriteError) -> Status {
    match error {
        WriteError::Rejected(CommandError::Mvcc(error)) => mvcc_status(&error),
        WriteError::Rejected(error @ CommandError::LeaseNotFound { .. }) => {
            Status::not_found(error.to_string())
        }
        WriteError::Rejected(error @ CommandError::LeaseExists { .. }) => {
            Status::failed_precondition(error.to_string())
        }
        WriteError::Rejected(error @ CommandError::TooManyLeases { .. }) => {
            Status::resource_exhausted(error.to_string())
        }
        WriteError::Rejected(error @ CommandError::StaleSequence { .. }) => {
            Status::aborted(error.to_string())
        }
        WriteError::NoLeader => Status::unavailable(error.to_string()),
        WriteError::OutcomeUnknown => Status::deadline_exceeded(error.to_string()),
        WriteError::Stopping => Status::unavailable(error.to_string()),
    }
}

pub fn read_status(error: ReadError) -> Status {
    match error {
        ReadError::Mvcc(error) => mvcc_status(&error),
        ReadError::NoLeader | ReadError::Timeout | ReadError::Stopping => {
            Status::unavailable(error.to_string())
        }
    }
}

pub fn admin_status(error: AdminError) -> Status {
    match error {
        AdminError::MemberNotFound => Status::not_found(error.to_string()),
        AdminError::Refused(reason) => Status::failed_precondition(reason),
        AdminError::NoLeader | AdminError::Timeout | AdminError::Stopping => {
            Status::unavailable(error.to_string())
        }
    }
}
