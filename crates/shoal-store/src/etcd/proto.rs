//! The Rust types, gRPC servers and clients generated from etcd's v3 protos in `proto/etcd`.
//!
//! The three packages are siblings here because the generated code of `etcdserverpb` names
//! the others as `super::mvccpb` and `super::authpb`. Their gRPC paths are etcd's own
//! (`/etcdserverpb.KV/Range`, ...), which is what lets etcd clients talk to shoal.

// Generated code follows the protos, not shoal's lints: proto comments become doc comments as
// written, and message shapes are etcd's.
#[allow(clippy::all, clippy::pedantic, rustdoc::all)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

#[allow(clippy::all, clippy::pedantic, rustdoc::all)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

#[allow(clippy::all, clippy::pedantic, rustdoc::all)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
