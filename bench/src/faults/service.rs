//! The release `credits` binary as a child process on loopback ports of its own: started on a
//! database, its output appended to a log file, killed (`SIGKILL`), stopped (`SIGTERM`) or
//! waited for.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// A free loopback port now (bound, then released for the service to take).
pub(super) fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// How to start one replica; the addresses stay the same across restarts, so clients keep
/// their channels.
#[derive(Clone)]
pub(super) struct Launch {
    pub binary: PathBuf,
    pub dir: PathBuf,
    pub database_url: String,
    pub secret: String,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub log: PathBuf,
    pub extra: HashMap<String, String>,
}

impl Launch {
    pub(super) fn new(
        binary: &Path,
        dir: &Path,
        database_url: &str,
        secret: &str,
        name: &str,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            database_url: database_url.to_owned(),
            secret: secret.to_owned(),
            grpc: free_addr()?,
            http: free_addr()?,
            log: dir.join(format!("{name}.log")),
            extra: HashMap::new(),
        })
    }

    pub(super) fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub(super) fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Starts the service and waits until `/readyz` answers 200 (at most a minute).
    pub(super) async fn start(&self, http: &reqwest::Client) -> anyhow::Result<Service> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            // No `.env` of the caller's, no settings but these.
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.database_url)
            .env("STRIPE_WEBHOOK_SECRET", &self.secret)
            .env("CREDIT_PACKS_FILE", self.dir.join("packs.toml"))
            .env("GRPC_ADDR", self.grpc.to_string())
            .env("HTTP_ADDR", self.http.to_string())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("HEALTH_CHECK_INTERVAL_MS", "250")
            .env("SHUTDOWN_GRACE", "15")
            .envs(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("start {}", self.binary.display()))?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the service exited at start ({status}); see {}",
                    self.log.display()
                );
            }
            let ready = http
                .get(format!("{}/readyz", self.http_url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(Service { child });
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the service was not ready within 60 s; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A running replica.
pub(super) struct Service {
    child: Child,
}

impl Service {
    /// `kill -9`: no shutdown code runs.
    pub(super) async fn kill(mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// Sends SIGTERM, as Kubernetes does.
    pub(super) fn terminate(&self) -> anyhow::Result<()> {
        let pid = self.child.id().context("the service has exited")?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        Ok(())
    }

    /// Waits for the exit (at most `limit`); the exit code, None for a signal.
    pub(super) async fn wait(mut self, limit: Duration) -> anyhow::Result<Option<i32>> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => Ok(status?.code()),
            Err(_) => {
                self.child.start_kill()?;
                bail!("the service did not exit within {limit:?}")
            }
        }
    }
}

/// The Stripe price of the one pack the services sell.
pub(super) const PRICE: &str = "price_faults_standard";

/// Writes the packs file the services sell: one pack with a Stripe price, as the events name.
pub(super) fn write_packs(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("packs.toml"),
        format!(
            "[[pack]]\nid = \"standard\"\nname = \"Standard\"\ncredits = 500\nunit_amount = 1500\n\
             currency = \"usd\"\nstripe_price_id = \"{PRICE}\"\n"
        ),
    )?;
    Ok(())
}
