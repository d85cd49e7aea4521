//! Runs the peer systems' benchmark scripts and reads their one-line JSON answers.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The flags every benchmark with peers shares.
#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    /// Folder of the peer scripts (default: $COAUG_PEERS, else ../shared/peers).
    #[arg(long, value_name = "DIR")]
    pub peers_dir: Option<PathBuf>,

    /// Venv for the peers, created on first use.
    #[arg(long, value_name = "DIR", default_value = "/tmp/coaug-peers")]
    pub venv: PathBuf,

    /// Measure coaug alone, without its peers.
    #[arg(long)]
    pub no_peers: bool,
}

impl PeerArgs {
    pub fn setup(&self) -> Result<PeerPython> {
        PeerPython::setup(&crate::paths::peers_dir(self.peers_dir.clone()), &self.venv)
    }
}

/// A Python interpreter with the peers installed (bm25s, pytrec_eval, llama-cpp-python).
pub struct PeerPython {
    python: PathBuf,
    peers_dir: PathBuf,
}

impl PeerPython {
    /// Creates the throwaway venv once through the peers' own `setup.sh` and returns its python.
    pub fn setup(peers_dir: &Path, venv: &Path) -> Result<Self> {
        let setup = peers_dir.join("setup.sh");
        if !setup.exists() {
            bail!("peer scripts not found at {} (set --peers-dir or $COAUG_PEERS to the folder holding setup.sh)", peers_dir.display());
        }
        if !venv.join("bin").join("python").exists() {
            eprintln!("setting up the peers' venv at {} (first time: a few minutes)…", venv.display());
        }
        let out = Command::new("bash").arg(&setup).arg(venv).output().with_context(|| format!("running {}", setup.display()))?;
        if !out.status.success() {
            bail!("{} failed ({}):\n{}", setup.display(), out.status, String::from_utf8_lossy(&out.stderr));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let python = stdout.lines().last().map(str::trim).unwrap_or_default();
        if python.is_empty() {
            bail!("{} printed no python path", setup.display());
        }
        Ok(Self { python: PathBuf::from(python), peers_dir: peers_dir.to_path_buf() })
    }

    /// Runs `script args…` with the given environment and parses the JSON object on its last line.
    pub fn run_json(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> Result<serde_json::Value> {
        let path = self.peers_dir.join(script);
        let mut cmd = Command::new(&self.python);
        cmd.arg(&path).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().with_context(|| format!("running {}", path.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("{} {} failed ({}):\n{}{}", script, args.join(" "), out.status, stdout, String::from_utf8_lossy(&out.stderr));
        }
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        serde_json::from_str(last).with_context(|| format!("{script} did not end with a JSON line: {last:?}"))
    }
}

/// A number from a peer's JSON answer, or NaN (reported, not fatal) when the key is missing.
pub fn field(v: &serde_json::Value, key: &str) -> f64 {
    v.get(key).and_then(|x| x.as_f64()).unwrap_or(f64::NAN)
}
