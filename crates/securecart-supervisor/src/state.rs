//! The state file of a running deployment: which components run where, with which pid. `up`
//! writes it (atomically, on every change) into the data directory and removes it when it
//! stops; `securecart status` and later tools read it.

use std::net::SocketAddr;
use std::path::Path;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::SupervisorError;

/// A running deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentState {
    /// The deployment's name.
    pub name: String,
    /// The pid of `securecart up`.
    pub supervisor_pid: u32,
    /// Every component.
    pub components: Vec<ComponentState>,
    /// (region, storefront URL).
    pub entry_points: Vec<(String, String)>,
    /// The token of the edges' admin API.
    #[serde(default)]
    pub admin_token: Option<String>,
}

/// One component.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentState {
    /// `region/name`.
    pub id: String,
    /// What it is.
    pub role: String,
    /// Its region.
    pub region: String,
    /// Its zone.
    pub zone: String,
    /// Where it serves traffic.
    pub address: SocketAddr,
    /// Where it serves `/metrics` and `/healthz`.
    pub admin_address: SocketAddr,
    /// Its pid, while it runs.
    pub pid: Option<u32>,
    /// How often it was restarted.
    pub restarts: u32,
}

/// Reads a state file; `None` if there is none or it is unreadable.
pub fn read(path: &Path) -> Option<DeploymentState> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes a state file atomically: a reader sees the old file or the new one, never half.
pub fn write(path: &Path, state: &DeploymentState) -> Result<(), SupervisorError> {
    let failed = |source| SupervisorError::State {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let temporary = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(state)
        .map_err(|error| failed(std::io::Error::other(error)))?;
    // The file holds the edges' admin token: readable and writable by its owner only.
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&temporary);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)?;
    }
    std::fs::rename(&temporary, path).map_err(failed)
}

/// Removes a state file.
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// Whether a process with this pid exists (and is not a zombie we could reap: a zombie
/// counts as alive until its parent waits for it).
pub fn is_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|pid| kill(Pid::from_raw(pid), None).is_ok())
}
