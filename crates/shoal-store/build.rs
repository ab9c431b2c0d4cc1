//! Generates the Rust types, gRPC servers and clients of etcd's v3 API (`proto/etcd`) and of
//! shoal's member-to-member transport (`proto/shoal`).
//!
//! The protos are parsed by `protox` (pure Rust) rather than `protoc`, so building shoal needs
//! no system protobuf compiler.

use std::error::Error;

/// The include root: imports inside the protos are written relative to it, exactly as etcd
/// writes them (`etcd/api/mvccpb/kv.proto`).
const PROTO_ROOT: &str = "proto";

/// etcd's `rpc.proto` imports `kv.proto` and `auth.proto`; they are listed anyway so that
/// their messages are generated even if an import were ever dropped.
const PROTO_FILES: [&str; 4] = [
    "etcd/api/mvccpb/kv.proto",
    "etcd/api/authpb/auth.proto",
    "etcd/api/etcdserverpb/rpc.proto",
    "shoal/peer.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");

    let file_descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Keys and values are handed between the store, Raft and gRPC without copying.
        .bytes(".")
        .compile_fds(file_descriptors)?;
    Ok(())
}
