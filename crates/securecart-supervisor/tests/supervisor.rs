//! The supervisor with real child processes.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use securecart_supervisor::{ChildSpec, Plan, SupervisorError, run};

fn plan(directory: &std::path::Path, command: &str, address: std::net::SocketAddr) -> Plan {
    Plan {
        name: "test".to_owned(),
        program: PathBuf::from("/bin/sh"),
        children: vec![ChildSpec {
            id: "test-1/child-1".to_owned(),
            role: "child".to_owned(),
            region: "test-1".to_owned(),
            zone: "test-1a".to_owned(),
            args: vec!["-c".to_owned(), command.to_owned()],
            address,
            admin_address: address,
        }],
        state_file: directory.join("state.json"),
        entry_points: Vec::new(),
        ready_timeout: Duration::from_secs(2),
        env: Vec::new(),
        admin_token: None,
    }
}

fn free_address() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
}

#[tokio::test]
async fn up_refuses_addresses_another_process_holds() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address");
    let result = run(
        plan(directory.path(), "sleep 30", address),
        std::future::pending(),
    )
    .await;
    match result {
        Err(SupervisorError::AddressInUse {
            id,
            address: reported,
        }) => {
            assert_eq!(id, "test-1/child-1");
            assert_eq!(reported, address);
        }
        other => panic!("expected AddressInUse, got {other:?}"),
    }
    assert!(
        !directory.path().join("state.json").exists(),
        "nothing was started"
    );
}

#[tokio::test]
async fn a_child_that_never_becomes_healthy_fails_up_and_is_stopped() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let pid_file = directory.path().join("pid");
    // The child records its pid, then crashes after a moment, again and again.
    let command = format!("echo $$ >> {}; sleep 0.3; exit 3", pid_file.display());
    let result = run(
        plan(directory.path(), &command, free_address()),
        std::future::pending(),
    )
    .await;
    match result {
        Err(SupervisorError::NotReady { ids, .. }) => assert_eq!(ids, "test-1/child-1"),
        other => panic!("expected NotReady, got {other:?}"),
    }
    let pids = std::fs::read_to_string(&pid_file).expect("pids");
    assert!(
        pids.lines().count() >= 2,
        "the crashed child was restarted: {pids}"
    );
    for pid in pids.lines() {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} still runs"
        );
    }
    assert!(
        !directory.path().join("state.json").exists(),
        "the state file is removed"
    );
}
