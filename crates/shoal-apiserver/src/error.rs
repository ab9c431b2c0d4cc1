//! The API's errors and their one mapping to a Kubernetes `Status`.
//!
//! Every failure a client can cause or observe is an `ApiError`; `ApiError::status` turns it
//! into the `metav1.Status` body and HTTP code kubectl knows how to print. Nothing else in the
//! crate builds Status bodies for errors.

use http::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

/// What a failed request tells its client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String, group: String, kind: String },
    /// A path or a resource type the server does not serve.
    #[error("the server could not find the requested resource")]
    NoSuchPath,
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String, group: String, kind: String },
    /// Optimistic concurrency: the object changed since the client read it.
    #[error(
        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict { resource: String, name: String, group: String, kind: String },
    /// Server-side apply found fields owned by other managers.
    /// A fenced write from a holder that no longer holds its Lease (`fence.rs`).
    #[error("{message}")]
    Fenced { message: String },
    /// A fenced write's Lease moved between its check and its write: nothing was written and
    /// `fence::dispatch` tries again. Never reaches a client.
    #[error("the fencing lease changed during the write; nothing was written, try again")]
    FenceMoved,
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<StatusCause>, name: String, group: String, kind: String },
    #[error("{message}")]
    Invalid { message: String, causes: Vec<StatusCause>, name: String, group: String, kind: String },
    #[error("{message}")]
    BadRequest { message: String },
    #[error("{message}")]
    MethodNotAllowed { message: String },
    #[error("the body of the request was in an unknown format - accepted media types include: {accepted}")]
    UnsupportedMediaType { accepted: String },
    #[error("{message}")]
    NotAcceptable { message: String },
    #[error("the request is too large: its body exceeds {limit_bytes} bytes")]
    RequestTooLarge { limit_bytes: usize },
    /// A watch or list asked for a revision the store has compacted away.
    #[error("{message}")]
    Expired { message: String },
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{message}")]
    Forbidden { message: String },
    #[error("too many requests: {message}")]
    TooManyRequests { message: String },
    /// The write may or may not have happened: the store's quorum did not answer in time.
    #[error("{message}")]
    Timeout { message: String },
    /// The store is unavailable (no leader, stopping).
    #[error("{message}")]
    ServiceUnavailable { message: String },
    /// A bug or a broken stored object; logged with detail, reported generically.
    #[error("internal error: {message}")]
    Internal { message: String },
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest { message: message.into() }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal { message: message.into() }
    }

    pub fn code(&self) -> StatusCode {
        match self {
            Self::NotFound { .. } | Self::NoSuchPath => StatusCode::NOT_FOUND,
            Self::AlreadyExists { .. }
            | Self::Conflict { .. }
            | Self::ApplyConflict { .. }
            | Self::Fenced { .. }
            | Self::FenceMoved => StatusCode::CONFLICT,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable { .. } => StatusCode::NOT_ACCEPTABLE,
            Self::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Expired { .. } => StatusCode::GONE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::ServiceUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The reason kubectl prints in `Error from server (<reason>)`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } | Self::NoSuchPath => "NotFound",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::Conflict { .. } | Self::ApplyConflict { .. } | Self::Fenced { .. } | Self::FenceMoved => {
                "Conflict"
            }
            Self::Invalid { .. } => "Invalid",
            Self::BadRequest { .. } => "BadRequest",
            Self::MethodNotAllowed { .. } => "MethodNotAllowed",
            Self::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            Self::NotAcceptable { .. } => "NotAcceptable",
            Self::RequestTooLarge { .. } => "RequestEntityTooLarge",
            Self::Expired { .. } => "Expired",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden { .. } => "Forbidden",
            Self::TooManyRequests { .. } => "TooManyRequests",
            Self::Timeout { .. } => "Timeout",
            Self::ServiceUnavailable { .. } => "ServiceUnavailable",
            Self::Internal { .. } => "InternalError",
        }
    }

    /// The `metav1.Status` body for this error.
    pub fn status(&self) -> Status {
        Status {
            status: Some("Failure".into()),
            code: Some(i32::from(self.code().as_u16())),
            reason: Some(self.reason().into()),
            message: Some(self.to_string()),
            details: self.details(),
            ..Status::default()
        }
    }

    fn details(&self) -> Option<StatusDetails> {
        let (name, group, kind, causes) = match self {
            Self::NotFound { resource, name, group, .. }
            | Self::AlreadyExists { resource, name, group, .. }
            | Self::Conflict { resource, name, group, .. } => {
                // kube-apiserver names the resource (plural) in `kind` for these.
                (name, group, resource.split('.').next().unwrap_or(resource), None)
            }
            Self::Invalid { causes, name, group, kind, .. }
            | Self::ApplyConflict { causes, name, group, kind, .. } => {
                (name, group, kind.as_str(), Some(causes.clone()))
            }
            _ => return None,
        };
        Some(StatusDetails {
            name: Some(name.clone()),
            group: Some(group.clone()),
            kind: Some(kind.to_owned()),
            causes,
            ..StatusDetails::default()
        })
    }
}

/// A successful-deletion or similar `Status{status: Success}` body.
pub fn success_status(details: Option<StatusDetails>) -> Status {
    Status { status: Some("Success".into()), details, ..Status::default() }
}
