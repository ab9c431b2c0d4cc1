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

// Tearing down a local cluster: `kill_all` ends every container and shim of a state
// directory, found by their command lines, and leaves those of another directory alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_all_ends_every_container_of_a_state_dir() {
    use shoal_agent::runtime::{ContainerConfig, Runtime, SandboxConfig};
    let doomed = tempfile::tempdir().expect("tempdir");
    let spared = tempfile::tempdir().expect("tempdir");
    let runtime_over = |dir: &std::path::Path, cidr: &str| {
        ProcessRuntime::new(ProcessRuntimeConfig {
            state_dir: dir.to_owned(),
            shim: vec![env!("CARGO_BIN_EXE_shoal").to_owned(), "shim".to_owned()],
            pod_cidr: cidr.parse().expect("cidr"),
            log_limits: LogLimits::default(),
            image_dir: None,
        })
        .expect("runtime")
    };
    let config = ContainerConfig {
        name: "main".into(),
        attempt: 0,
        image: "host".into(),
        argv: vec!["/bin/sh".into(), "-c".into(), "sleep 1000".into()],
        env: vec![],
        working_dir: None,
        mounts: vec![],
    };
    let mut ids = Vec::new();
    for (dir, cidr) in [(doomed.path(), "127.78.0.0/24"), (spared.path(), "127.79.0.0/24")] {
        let runtime = runtime_over(dir, cidr);
        let sandbox = runtime
            .run_sandbox(&SandboxConfig {
                pod_uid: "u".into(),
                namespace: "default".into(),
                name: "p".into(),
                dns: None,
            })
            .await
            .expect("sandbox");
        let id = runtime.start_container(&sandbox, &config).await.expect("starts");
        ids.push((runtime, id));
    }
    shoal_agent::runtime::process::kill_all(doomed.path());
    let (doomed_runtime, doomed_id) = &ids[0];
    let exit =
        tokio::time::timeout(std::time::Duration::from_secs(10), doomed_runtime.wait_container(doomed_id))
            .await
            .expect("the killed container ends")
            .expect("waits");
    assert_eq!(exit.exit_code, 137, "{exit:?}");
    let (spared_runtime, spared_id) = &ids[1];
    let listed = spared_runtime.list_containers().await.expect("lists");
    assert!(
        listed.iter().any(|info| info.id == *spared_id
            && matches!(info.state, shoal_agent::runtime::ContainerState::Running { .. })),
        "the other directory's container still runs"
    );
    spared_runtime.stop_container(spared_id, std::time::Duration::ZERO).await.expect("stops");
}
