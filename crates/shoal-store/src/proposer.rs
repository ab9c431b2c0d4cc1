//! Group commit and read-index coalescing: many clients, few Raft round trips.
//!
//! openraft 0.9 appends each proposal with its own fsync and confirms each read index with its
//! own heartbeat round. Under load that caps writes at one per fsync and reads at one per
//! round trip. The `Proposer` gathers the writes that arrive while earlier entries are being
//! made durable into one `Batch` entry; the `ReadIndexCoalescer` answers every reader that
//! arrived before a leadership check with that one check. Neither changes what a client
//! observes: each command still applies alone, in order, with its own revision, and each
//! reader's index is confirmed after its read began.

use std::sync::Arc;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::command::{Batch, Command, CommandResponse};
use crate::raft::{MemberId, Raft};

/// Writes waiting for a batch. A full queue makes writers wait: it is the back-pressure.
pub const MAX_QUEUED_WRITES: usize = 8_192;
/// Commands one entry carries at most.
pub const MAX_BATCH_COMMANDS: usize = 1_024;
/// Bytes of commands one entry carries at most (a single larger command goes alone). An entry
/// must reach a follower and be fsynced there within openraft's AppendEntries timeout (the
/// 40 ms heartbeat interval) on a busy machine: half a MiB is some 300 pods.
pub const MAX_BATCH_BYTES: usize = 512 * 1024;
/// Batches proposed and not yet applied. Two let one batch gather while another is fsynced.
pub const MAX_BATCHES_IN_FLIGHT: usize = 2;

/// Why a proposal got no response from this member's Raft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// This member is not (or no longer) the leader. The batch may have been appended before
    /// leadership moved, so the command may still commit.
    NotLeader { leader: Option<MemberId> },
    /// Raft is shutting down; the command may or may not commit.
    Stopping,
}

pub type ProposeResult = Result<CommandResponse, ProposeError>;

type Pending = (Command, oneshot::Sender<ProposeResult>);

/// Sends this member's proposals to Raft in batches. Cheap to share.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts the batching task; it ends when every `Proposer` handle is dropped.
    pub fn start(raft: Raft) -> Proposer {
        let (queue, receiver) = mpsc::channel(MAX_QUEUED_WRITES);
        tokio::spawn(run_batches(raft, receiver));
        Proposer { queue }
    }

    /// Proposes one command and waits until it is applied. Dropping the future abandons the
    /// wait, not the command: it may still commit.
    pub async fn propose(&self, command: Command) -> ProposeResult {
        let (reply, response) = oneshot::channel();
        self.queue.send((command, reply)).await.map_err(|_| ProposeError::Stopping)?;
        response.await.unwrap_or(Err(ProposeError::Stopping))
    }
}

async fn run_batches(raft: Raft, mut receiver: mpsc::Receiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT));
    while let Some(first) = receiver.recv().await {
        // Waiting for a slot first lets the batch grow while earlier ones are being fsynced.
        let Ok(slot) = in_flight.clone().acquire_owned().await else { return };
        let (batch, _) = gather_batch(first, &mut receiver, |pending| encoded_len(&pending.0), |_| true);
        let raft = raft.clone();
        tokio::spawn(async move {
            let (commands, replies): (Vec<Command>, Vec<_>) = batch.into_iter().unzip();
            let count = commands.len();
            let result = raft.client_write(Batch { commands }).await;
            drop(slot);
            match result {
                Ok(written) => {
                    assert_eq!(written.data.responses.len(), count, "one response per command of a batch");
                    for (reply, response) in replies.into_iter().zip(written.data.responses) {
                        let _ = reply.send(Ok(response));
                    }
                }
                Err(error) => {
                    let error = match error {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                            ProposeError::NotLeader { leader: forward.leader_id }
                        }
                        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
                            unreachable!("a batch of commands cannot fail a membership change: {error}")
                        }
                        RaftError::Fatal(_) => ProposeError::Stopping,
                    };
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}

/// A batch of `first` and the items `receiver` holds ready, up to `MAX_BATCH_COMMANDS` items
/// and `MAX_BATCH_BYTES` by `bytes`, and the first ready item that `belongs` turned away (it
/// starts the next batch).
pub(crate) fn gather_batch<T>(
    first: T,
    receiver: &mut mpsc::Receiver<T>,
    bytes: impl Fn(&T) -> usize,
    belongs: impl Fn(&T) -> bool,
) -> (Vec<T>, Option<T>) {
    let mut total = bytes(&first);
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH_COMMANDS && total < MAX_BATCH_BYTES {
        let Ok(next) = receiver.try_recv() else { break };
        if !belongs(&next) {
            return (batch, Some(next));
        }
        total += bytes(&next);
        batch.push(next);
    }
    (batch, None)
}

/// An estimate of a command's size in the log, for bounding batches.
pub(crate) fn encoded_len(command: &Command) -> usize {
    postcard::experimental::serialized_size(command).unwrap_or(MAX_BATCH_BYTES)
}

/// Why the leader could not confirm a read index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadIndexError {
    NotLeader { leader: Option<MemberId> },
    NoQuorum { reason: String },
    Stopping,
}

/// Serves read-index requests on the leader, one leadership check for all readers waiting.
#[derive(Clone)]
pub struct ReadIndexCoalescer {
    queue: mpsc::Sender<oneshot::Sender<Result<u64, ReadIndexError>>>,
}

/// Readers waiting for the next leadership check.
pub const MAX_QUEUED_READS: usize = 8_192;

impl ReadIndexCoalescer {
    pub fn start(raft: Raft) -> ReadIndexCoalescer {
        let (queue, receiver) = mpsc::channel(MAX_QUEUED_READS);
        tokio::spawn(run_read_index(raft, receiver));
        ReadIndexCoalescer { queue }
    }

    /// The log index a read that begins now must wait for to be linearizable.
    pub async fn read_index(&self) -> Result<u64, ReadIndexError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(reply).await.map_err(|_| ReadIndexError::Stopping)?;
        answer.await.unwrap_or(Err(ReadIndexError::Stopping))
    }
}

async fn run_read_index(
    raft: Raft,
    mut receiver: mpsc::Receiver<oneshot::Sender<Result<u64, ReadIndexError>>>,
) {
    while let Some(first) = receiver.recv().await {
        // Everyone queued now began their read before this check starts, so its index is
        // valid for all of them; later arrivals wait for the next check.
        let mut waiting = vec![first];
        while let Ok(next) = receiver.try_recv() {
            waiting.push(next);
        }
        let answer = match raft.get_read_log_id().await {
            Ok((read_log_id, _applied)) => Ok(read_log_id.map_or(0, |id| id.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                Err(ReadIndexError::NotLeader { leader: forward.leader_id })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(error))) => {
                Err(ReadIndexError::NoQuorum { reason: error.to_string() })
            }
            Err(RaftError::Fatal(_)) => Err(ReadIndexError::Stopping),
        };
        for reply in waiting {
            let _ = reply.send(answer.clone());
        }
    }
}
