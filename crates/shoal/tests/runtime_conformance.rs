//! The process runtime against the runtime conformance suite, with the real `shoal shim`.

use shoal_agent::runtime::conformance;
use shoal_agent::runtime::log_file::LogLimits;
use shoal_agent::runtime::process::{ProcessRuntime, ProcessRuntimeConfig};

// Every clause of the Runtime contract, checked by the shared suite: exit codes and logs,
// environment, start errors, graceful stop, process trees, addresses, exec and re-adoption by
// a second runtime instance over the same state directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_runtime_conforms() {
    let state = tempfile::tempdir().expect("tempdir");
    let make = || {
        ProcessRuntime::new(ProcessRuntimeConfig {
            state_dir: state.path().to_owned(),
            shim: vec![env!("CARGO_BIN_EXE_shoal").to_owned(), "shim".to_owned()],
            pod_cidr: "127.77.0.0/24".parse().expect("cidr"),
            log_limits: LogLimits::default(),
            image_dir: None,
        })
        .expect("runtime")
    };
    conformance::run_all(make).await;
}
