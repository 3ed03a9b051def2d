//! A PostgreSQL cluster of the fault scenarios' own (`<version>/faults`, default port 5433),
//! created and started when absent, so stopping it never touches the cluster other tests share.
//! Run as root: `pg_ctlcluster` switches to the `postgres` user itself.

use std::{process::Command, time::Duration};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database};

/// The cluster the scenarios may stop and start.
#[derive(Debug, Clone)]
pub(super) struct Cluster {
    pub version: String,
    pub name: String,
    pub port: u16,
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Cluster {
    /// The newest installed PostgreSQL version's cluster `name` on `port`: created with trust
    /// authentication on loopback if it does not exist, started if it is down.
    pub(super) async fn ensure(name: &str, port: u16) -> anyhow::Result<Self> {
        let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
            .context("PostgreSQL is not installed (/etc/postgresql)")?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        versions.sort_by_key(|v| v.parse::<u32>().unwrap_or(0));
        let version = versions
            .pop()
            .context("no PostgreSQL version in /etc/postgresql")?;
        let cluster = Self {
            version,
            name: name.to_owned(),
            port,
        };
        let clusters = run("pg_lsclusters", &["--no-header"])?;
        let exists = clusters.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.next() == Some(cluster.version.as_str()) && f.next() == Some(name)
        });
        if !exists {
            eprintln!(
                "creating PostgreSQL cluster {}/{name} on port {port}",
                cluster.version
            );
            run(
                "pg_createcluster",
                &[
                    &cluster.version,
                    name,
                    "-p",
                    &port.to_string(),
                    "--",
                    "--auth=trust",
                ],
            )?;
            std::fs::write(
                format!("/etc/postgresql/{}/{name}/pg_hba.conf", cluster.version),
                "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n",
            )?;
        }
        if !cluster.ready() {
            cluster.start().await?;
        }
        Ok(cluster)
    }

    pub(super) fn admin_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    pub(super) fn ready(&self) -> bool {
        Command::new("pg_isready")
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    fn ctl(&self, action: &str) -> anyhow::Result<()> {
        run(
            "pg_ctlcluster",
            &["--skip-systemctl-redirect", &self.version, &self.name, action],
        )
        .map(|_| ())
    }

    /// Stops the server (fast: sessions are ended, nothing waits for clients).
    pub(super) fn stop(&self) -> anyhow::Result<()> {
        self.ctl("stop")
    }

    /// Starts the server and waits until it accepts connections.
    pub(super) async fn start(&self) -> anyhow::Result<()> {
        self.ctl("start")?;
        for _ in 0..100 {
            if self.ready() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("PostgreSQL {}/{} did not come up", self.version, self.name)
    }

    /// A new, empty database for one run; its URL.
    pub(super) async fn database(&self, name: &str) -> anyhow::Result<String> {
        let admin = Database::connect(self.admin_url()).await?;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        admin.close().await?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        ))
    }

    /// Drops a run's database.
    pub(super) async fn drop_database(&self, name: &str) {
        if let Ok(admin) = Database::connect(self.admin_url()).await {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            let _ = admin.close().await;
        }
    }
}
