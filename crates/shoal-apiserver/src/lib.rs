//! shoal's Kubernetes API server: the Kubernetes REST API over the replicated store.
//!
//! A request flows `server` (TLS, identity) → `api` (authentication, routing, authorization,
//! body limits, errors as `Status`) → `dispatch` → the verb's module (`read`, `write`,
//! `watch`, `review`), which runs writes through `admit` (decoding, defaulting, validation)
//! and reaches the store only through `objects`. `join` issues node credentials for
//! bootstrap tokens (`bootstrap_token`) and serves the CA certificate. `metrics` serves
//! `metrics.k8s.io` from the agents' measurements. `resource` is the table of served types that
//! discovery, routing and OpenAPI are computed from.

pub mod admit;
pub mod allocator;
pub mod api;
pub mod auth;
pub mod bootstrap_token;
pub mod defaults;
pub mod discovery;
pub mod dispatch;
pub mod error;
pub mod fence;
pub mod join;
pub mod managed_fields;
pub mod meta;
pub mod metrics;
pub mod node_proxy;
pub mod objects;
pub mod openapi;
pub mod protobuf;
pub mod read;
pub mod resource;
pub mod review;
pub mod route;
pub mod schema;
pub mod secret_box;
pub mod selectors;
pub mod server;
pub mod strategic_merge;
pub mod table;
pub mod validation;
pub mod watch;
pub mod write;

pub use server::{ApiServerConfig, RunningApiServer, start};
