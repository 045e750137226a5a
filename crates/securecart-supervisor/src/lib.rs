//! The supervisor behind `securecart up`: it runs every component of a deployment as a child
//! process of the same binary, prefixes their log lines with their names, waits until each
//! answers its health check, restarts a child that crashes (with backoff), writes the state
//! file that `securecart status` reads, and on Ctrl-C or SIGTERM stops every child and
//! leaves no process behind.
//!
//! **API boundary:** the supervisor runs a [`Plan`]: child names, command lines and health
//! addresses. It knows nothing of what the children are; the binary builds the plan from
//! the topology.
//!
//! **Invariant:** no child outlives the supervisor. Children run in their own process
//! group (so a terminal's Ctrl-C reaches only the supervisor, which stops them in order),
//! and each child asks the kernel for SIGTERM when its parent dies ([`die_with_parent`]), so
//! even `kill -9` of the supervisor stops them.

mod probe;
pub mod state;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub use probe::probe_health;
pub use state::{ComponentState, DeploymentState};

/// The environment variable through which a child learns its supervisor's pid.
pub const PARENT_PID_VARIABLE: &str = "SECURECART_SUPERVISOR_PID";

/// One child to run.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Its unique name, such as `us-east-1/catalog-1`.
    pub id: String,
    /// What it is, for the status table (`edge`, `catalog`, ...).
    pub role: String,
    /// Its region.
    pub region: String,
    /// Its zone.
    pub zone: String,
    /// The arguments after the binary's name.
    pub args: Vec<String>,
    /// Where it serves traffic.
    pub address: SocketAddr,
    /// Where it answers `/healthz`.
    pub admin_address: SocketAddr,
}

/// Everything `up` runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The deployment's name.
    pub name: String,
    /// The binary to run (normally the current executable).
    pub program: PathBuf,
    /// The children, started in this order and stopped in the reverse order.
    pub children: Vec<ChildSpec>,
    /// Where the state file is written.
    pub state_file: PathBuf,
    /// The storefront URLs to print once everything is healthy.
    pub entry_points: Vec<(String, String)>,
    /// How long to wait for every child to become healthy.
    pub ready_timeout: Duration,
    /// Environment variables every child gets (such as the edges' admin token).
    pub env: Vec<(String, String)>,
    /// The admin token, kept in the state file for the commands that change a running
    /// deployment.
    pub admin_token: Option<String>,
}

/// Why `up` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// Another supervisor runs the same data directory.
    #[error(
        "a deployment is already running from this data directory (supervisor pid {pid}); stop it or use another --data-dir"
    )]
    AlreadyRunning {
        /// Its pid.
        pid: u32,
    },
    /// An address of the plan is taken by another process.
    #[error(
        "{address} ({id}) is already in use: is another deployment running (`securecart status`)? Stop it or use a topology with other addresses"
    )]
    AddressInUse {
        /// The child that needs the address.
        id: String,
        /// The address.
        address: SocketAddr,
    },
    /// A child could not be started at all.
    #[error("cannot start {id}: {source}")]
    Spawn {
        /// The child.
        id: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Some children did not become healthy in time.
    #[error("not healthy after {seconds} s: {ids}; see their log lines above")]
    NotReady {
        /// The wait.
        seconds: u64,
        /// The children that were not healthy.
        ids: String,
    },
    /// The state file could not be written.
    #[error("cannot write the state file {path}: {source}")]
    State {
        /// The file.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// Called first thing by a child process: if a supervisor started it, ask the kernel to
/// send SIGTERM when the supervisor dies, and exit at once if it already has.
pub fn die_with_parent() {
    let Some(parent) = std::env::var(PARENT_PID_VARIABLE)
        .ok()
        .and_then(|pid| pid.parse::<i32>().ok())
    else {
        return;
    };
    if let Err(error) = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM) {
        tracing::warn!(%error, "cannot ask to be stopped with the supervisor");
    }
    // The supervisor may have died before the request above: then we were re-parented.
    if nix::unistd::getppid().as_raw() != parent {
        std::process::exit(0);
    }
}

/// Writes one line of a child's output with its name in front, whole, so that lines of
/// different children never interleave mid-line.
fn write_prefixed(id: &str, line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{id:<24} | {line}");
}

fn pump<R: AsyncRead + Unpin + Send + 'static>(id: String, reader: R) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            write_prefixed(&id, &line);
        }
    });
}

struct Running {
    spec: ChildSpec,
    child: Option<Child>,
    pid: Option<u32>,
    started: Instant,
    restarts: u32,
    backoff: Duration,
    restart_at: Option<Instant>,
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that ran this long before crashing restarts without delay growth.
const STABLE_AFTER: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);

fn spawn(plan: &Plan, spec: &ChildSpec) -> Result<Child, SupervisorError> {
    let mut command = Command::new(&plan.program);
    command
        .args(&spec.args)
        .env(PARENT_PID_VARIABLE, std::process::id().to_string())
        .envs(
            plan.env
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| SupervisorError::Spawn {
        id: spec.id.clone(),
        source,
    })?;
    if let Some(stdout) = child.stdout.take() {
        pump(spec.id.clone(), stdout);
    }
    if let Some(stderr) = child.stderr.take() {
        pump(spec.id.clone(), stderr);
    }
    Ok(child)
}

fn snapshot(plan: &Plan, running: &[Running]) -> DeploymentState {
    DeploymentState {
        name: plan.name.clone(),
        supervisor_pid: std::process::id(),
        components: running
            .iter()
            .map(|entry| ComponentState {
                id: entry.spec.id.clone(),
                role: entry.spec.role.clone(),
                region: entry.spec.region.clone(),
                zone: entry.spec.zone.clone(),
                address: entry.spec.address,
                admin_address: entry.spec.admin_address,
                pid: entry.pid,
                restarts: entry.restarts,
            })
            .collect(),
        entry_points: plan.entry_points.clone(),
        admin_token: plan.admin_token.clone(),
    }
}

/// Runs the plan until `shutdown` completes (or the children never become healthy), then
/// stops every child.
pub async fn run(plan: Plan, shutdown: impl Future<Output = ()>) -> Result<(), SupervisorError> {
    if let Some(existing) = state::read(&plan.state_file)
        && existing.supervisor_pid != std::process::id()
        && state::is_alive(existing.supervisor_pid)
    {
        return Err(SupervisorError::AlreadyRunning {
            pid: existing.supervisor_pid,
        });
    }
    check_addresses_free(&plan)?;
    let mut running = Vec::with_capacity(plan.children.len());
    let mut result = Ok(());
    for spec in &plan.children {
        match spawn(&plan, spec) {
            Ok(child) => running.push(Running {
                spec: spec.clone(),
                pid: child.id(),
                child: Some(child),
                started: Instant::now(),
                restarts: 0,
                backoff: INITIAL_BACKOFF,
                restart_at: None,
            }),
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    if result.is_ok() {
        result = state::write(&plan.state_file, &snapshot(&plan, &running));
    }
    if result.is_ok() {
        result = supervise(&plan, &mut running, shutdown).await;
    }
    stop_all(&mut running).await;
    state::remove(&plan.state_file);
    result
}

/// Refuses to start when another process holds one of the plan's addresses: its health
/// checks would answer for our children, and ours would crash-loop.
fn check_addresses_free(plan: &Plan) -> Result<(), SupervisorError> {
    for spec in &plan.children {
        for address in [spec.address, spec.admin_address] {
            if let Err(error) = std::net::TcpListener::bind(address)
                && error.kind() == std::io::ErrorKind::AddrInUse
            {
                return Err(SupervisorError::AddressInUse {
                    id: spec.id.clone(),
                    address,
                });
            }
        }
    }
    Ok(())
}

async fn supervise(
    plan: &Plan,
    running: &mut [Running],
    shutdown: impl Future<Output = ()>,
) -> Result<(), SupervisorError> {
    tokio::pin!(shutdown);
    let (exit_sender, mut exits) = mpsc::unbounded_channel::<(usize, u32)>();
    let watch_exit = |index: usize, entry: &mut Running| {
        if let Some(mut child) = entry.child.take() {
            let sender = exit_sender.clone();
            let pid = entry.pid.unwrap_or(0);
            tokio::spawn(async move {
                let status = child.wait().await;
                let code = status
                    .map(|status| status.to_string())
                    .unwrap_or_else(|error| error.to_string());
                tracing::debug!(pid, %code, "child exited");
                let _ = sender.send((index, pid));
            });
        }
    };
    for (index, entry) in running.iter_mut().enumerate() {
        watch_exit(index, entry);
    }

    let ready_deadline = Instant::now() + plan.ready_timeout;
    let mut announced = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            Some((index, pid)) = exits.recv() => {
                let entry = &mut running[index];
                if entry.pid != Some(pid) {
                    continue;
                }
                entry.pid = None;
                if entry.started.elapsed() >= STABLE_AFTER {
                    entry.backoff = INITIAL_BACKOFF;
                }
                write_prefixed(&entry.spec.id, &format!("exited; restarting in {} ms", entry.backoff.as_millis()));
                entry.restart_at = Some(Instant::now() + entry.backoff);
                entry.backoff = (entry.backoff * 2).min(MAX_BACKOFF);
            }
            _ = tick.tick() => {
                let mut changed = false;
                for (index, entry) in running.iter_mut().enumerate() {
                    if entry.restart_at.is_none_or(|at| at > Instant::now()) {
                        continue;
                    }
                    entry.restart_at = None;
                    match spawn(plan, &entry.spec) {
                        Ok(child) => {
                            entry.pid = child.id();
                            entry.child = Some(child);
                            entry.started = Instant::now();
                            entry.restarts += 1;
                            watch_exit(index, entry);
                            changed = true;
                        }
                        Err(error) => {
                            write_prefixed(&entry.spec.id, &format!("{error}"));
                            entry.restart_at = Some(Instant::now() + entry.backoff);
                            entry.backoff = (entry.backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
                if changed {
                    state::write(&plan.state_file, &snapshot(plan, running))?;
                }
                if !announced {
                    let mut waiting = Vec::new();
                    for entry in running.iter() {
                        let alive = entry.pid.is_some_and(state::is_alive);
                        if !alive || !probe_health(entry.spec.admin_address, Duration::from_millis(500)).await {
                            waiting.push(entry.spec.id.clone());
                        }
                    }
                    if waiting.is_empty() {
                        announced = true;
                        announce(plan, running);
                    } else if Instant::now() >= ready_deadline {
                        return Err(SupervisorError::NotReady {
                            seconds: plan.ready_timeout.as_secs(),
                            ids: waiting.join(", "),
                        });
                    }
                }
            }
        }
    }
}

/// Prints what runs where, once everything is healthy: the command's own output, on stdout.
fn announce(plan: &Plan, running: &[Running]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nSecureCart `{}` is up: {} components healthy.\n",
        plan.name,
        running.len()
    );
    let _ = writeln!(
        out,
        "{:<24} {:<11} {:<12} {:<22} {:<22} {:>7}",
        "COMPONENT", "ROLE", "ZONE", "ADDRESS", "ADMIN", "PID"
    );
    for entry in running {
        let _ = writeln!(
            out,
            "{:<24} {:<11} {:<12} {:<22} {:<22} {:>7}",
            entry.spec.id,
            entry.spec.role,
            entry.spec.zone,
            entry.spec.address.to_string(),
            entry.spec.admin_address.to_string(),
            entry
                .pid
                .map_or_else(|| "-".to_owned(), |pid| pid.to_string()),
        );
    }
    let _ = writeln!(out);
    for (region, url) in &plan.entry_points {
        let _ = writeln!(out, "Storefront of {region}: {url}");
    }
    let _ = writeln!(out, "\nPress Ctrl-C to stop everything.");
    let _ = out.flush();
}

/// Stops the children layer by layer in reverse start order (consecutive children of one
/// role form a layer): the edges first, and each layer only once the one before it has
/// exited, so that an edge draining its requests still finds its services. Each layer gets
/// SIGTERM, then SIGKILL for whoever outlives the grace period.
async fn stop_all(running: &mut [Running]) {
    let mut layer_end = running.len();
    while layer_end > 0 {
        let role = running[layer_end - 1].spec.role.clone();
        let mut layer_start = layer_end - 1;
        while layer_start > 0 && running[layer_start - 1].spec.role == role {
            layer_start -= 1;
        }
        stop_layer(&mut running[layer_start..layer_end]).await;
        layer_end = layer_start;
    }
}

async fn stop_layer(layer: &mut [Running]) {
    let mut pids: HashMap<u32, String> = HashMap::new();
    for entry in layer.iter_mut() {
        entry.restart_at = None;
        if let Some(pid) = entry.pid.take() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            pids.insert(pid, entry.spec.id.clone());
        }
        // A child that was never handed to an exit watcher is still owned here.
        if let Some(mut child) = entry.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    while !pids.is_empty() && Instant::now() < deadline {
        pids.retain(|pid, _| state::is_alive(*pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (pid, id) in pids {
        write_prefixed(&id, "did not stop in time; killed");
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}
