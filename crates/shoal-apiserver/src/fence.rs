//! Fencing: a writer that holds a coordination.k8s.io Lease makes each of its writes
//! conditional on still holding it.
//!
//! The leader-elected scheduler and controllers send `Shoal-Fence: <namespace>/<lease>/<holder>`
//! on every request. For a write, the API server reads that Lease, refuses the write with 409
//! Conflict unless `spec.holderIdentity` is `<holder>`, and otherwise adds "the Lease's key is
//! still at the revision just read" to the compares of the write's store transaction. The check
//! and the write are then one atomic step of the replicated store: once another writer has
//! taken the Lease, no write of the deposed holder can land, however long it was paused or cut
//! off, and whatever its clock says. Clocks only decide when a Lease may be taken; they never
//! decide whether a write is safe.
//!
//! The holder's own renewals move the Lease's revision too, so a write that races one fails its
//! compare; [`dispatch`] then reads the Lease again and repeats the whole request (nothing was
//! written), at most [`ATTEMPTS_MAX`] times.
//!
//! The revision to compare travels from [`dispatch`] to `ObjectStore::txn` as a task-local, so
//! that every write path of every verb is fenced without threading it through each of them.

use http::Method;
use serde_json::Value;
use shoal_store::mvcc::Revision;

use crate::api::{Api, Call, Reply};
use crate::error::ApiError;
use crate::objects::{ObjectStore, ReadAt};
use crate::resource;

/// The request header that carries a fence.
pub const HEADER: &str = "shoal-fence";
/// How many times a fenced request is tried while the holder's own renewals keep moving the
/// Lease under it.
pub const ATTEMPTS_MAX: usize = 5;

tokio::task_local! {
    /// The fence of the request this task serves, if it has one.
    static FENCE: Fence;
}

/// What a fenced writer claims: that it holds this Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub namespace: String,
    pub lease: String,
    pub holder: String,
}

impl Claim {
    /// Parses the header's value, `<namespace>/<lease>/<holder>`.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        let mut parts = value.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(namespace), Some(lease), Some(holder))
                if !namespace.is_empty() && !lease.is_empty() && !holder.is_empty() =>
            {
                Ok(Self { namespace: namespace.into(), lease: lease.into(), holder: holder.into() })
            }
            _ => Err(ApiError::bad_request(format!(
                "the {HEADER} header must be <namespace>/<lease>/<holder>, not {value:?}"
            ))),
        }
    }

    /// The header's value for this claim.
    pub fn header_value(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.lease, self.holder)
    }
}

/// The compare a fenced write adds: the Lease's key is still at `revision`.
#[derive(Clone, Debug)]
pub(crate) struct Fence {
    pub key: String,
    pub revision: Revision,
}

impl Fence {
    /// The fence of the request this task serves.
    pub fn current() -> Option<Self> {
        FENCE.try_with(Clone::clone).ok()
    }
}

/// Serves `call`, fenced by its `Shoal-Fence` header when it has one and writes.
pub async fn dispatch(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let Some(value) = call.headers.get(HEADER) else { return crate::dispatch::dispatch(api, call).await };
    let value =
        value.to_str().map_err(|_| ApiError::bad_request(format!("the {HEADER} header is not text")))?;
    let claim = Claim::parse(value)?;
    if !writes(call) {
        return crate::dispatch::dispatch(api, call).await;
    }
    // The first attempt reads the Lease from this member's copy; should that be stale, the
    // compare fails and later attempts read it linearizably.
    let mut read = ReadAt::Any;
    for _ in 0..ATTEMPTS_MAX {
        let fence = check(&api.objects, &claim, read).await?;
        match FENCE.scope(fence, crate::dispatch::dispatch(api, call)).await {
            Err(ApiError::FenceMoved) => read = ReadAt::Latest,
            outcome => return outcome,
        }
    }
    Err(ApiError::Timeout {
        message: format!(
            "the lease {}/{} kept changing during {ATTEMPTS_MAX} attempts of this fenced write; nothing was written",
            claim.namespace, claim.lease
        ),
    })
}

/// Whether the call may write (a watch or a read needs no fence).
fn writes(call: &Call<'_>) -> bool {
    !matches!(call.method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Reads the claimed Lease: the fence for a holder that still holds it, 409 otherwise.
async fn check(objects: &ObjectStore, claim: &Claim, read: ReadAt) -> Result<Fence, ApiError> {
    let leases = resource::find("coordination.k8s.io", "v1", "leases").expect("leases are served");
    let deposed = |held_by: &str| ApiError::Fenced {
        message: format!(
            "the lease {}/{} is {held_by}, not by {:?}: this writer was deposed and may not write",
            claim.namespace, claim.lease, claim.holder
        ),
    };
    let Some(stored) = objects.get(leases, Some(&claim.namespace), &claim.lease, read).await? else {
        return Err(deposed("gone"));
    };
    let holder = stored.object.pointer("/spec/holderIdentity").and_then(Value::as_str).unwrap_or("");
    if holder != claim.holder {
        return Err(deposed(&format!("held by {holder:?}")));
    }
    Ok(Fence {
        key: ObjectStore::key(leases, Some(&claim.namespace), &claim.lease),
        revision: stored.revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_reads_back_from_its_header() {
        let claim = Claim {
            namespace: "kube-system".into(),
            lease: "kube-scheduler".into(),
            holder: "s1_ab/c".into(),
        };
        assert_eq!(Claim::parse(&claim.header_value()).unwrap(), claim);
    }

    #[test]
    fn a_malformed_claim_is_a_bad_request() {
        for value in ["", "kube-system", "kube-system/lease", "kube-system//holder", "/lease/holder"] {
            let error = Claim::parse(value).unwrap_err();
            assert_eq!(error.reason(), "BadRequest", "{value:?}");
        }
    }
}
