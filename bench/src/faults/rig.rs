//! What every scenario sets up: a scratch directory with a packs file, a database (a SQLite
//! file, optionally on a small tmpfs, or a fresh database on the scenarios' own PostgreSQL
//! cluster), the replicas' launch settings, funded accounts and the traffic to send them.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use anyhow::{Context, bail};
use credits::grpc::pb;

use super::{
    Database, FaultArgs,
    check::{self, Tally},
    pg::Cluster,
    service::{Launch, Service, write_packs},
    traffic::Traffic,
};
use crate::{scenarios::Target, webhook::Events};

pub(super) const SECRET: &str = "whsec_faults";
/// Each account's start: enough for every debit a run can make.
const FUNDS: i64 = 10_000_000;

/// A tmpfs mounted for one run, unmounted when dropped.
pub(super) struct Mount(PathBuf);

impl Mount {
    pub(super) fn new(at: &Path, size: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(at)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .context("run mount")?;
        if !status.success() {
            bail!("mount -t tmpfs failed (root and CAP_SYS_ADMIN are needed)");
        }
        Ok(Self(at.to_owned()))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Where the run's database lives.
pub(super) enum Store {
    Sqlite { tmpfs: Option<String> },
    Postgres,
}

pub(super) struct Rig {
    pub dir: PathBuf,
    pub launches: Vec<Launch>,
    pub traffic: Traffic,
    pub http: reqwest::Client,
    pub pack_credits: i64,
    pub start: Vec<i64>,
    pub cluster: Option<Cluster>,
    pub mount: Option<Mount>,
    pg_database: Option<String>,
}

impl Rig {
    /// Sets up `replicas` replicas, starts them, and creates and funds the accounts.
    pub(super) async fn new(
        args: &FaultArgs,
        replicas: usize,
        store: Store,
        extra: &[(&str, String)],
    ) -> anyhow::Result<(Self, Vec<Service>)> {
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let dir = std::env::temp_dir().join(format!("credits-faults-{run}"));
        std::fs::create_dir_all(&dir)?;
        write_packs(&dir)?;
        let binary = match &args.binary {
            Some(binary) => binary.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("no directory beside credits-bench")?
                .join("credits"),
        };
        let (mut cluster, mut mount, mut pg_database) = (None, None, None);
        let database_url = match store {
            Store::Sqlite { tmpfs } => {
                let db_dir = match tmpfs {
                    Some(size) => {
                        let m = Mount::new(&dir.join("db"), &size)?;
                        let path = m.path().to_owned();
                        mount = Some(m);
                        path
                    }
                    None => dir.clone(),
                };
                format!("sqlite://{}?mode=rwc", db_dir.join("credits.db").display())
            }
            Store::Postgres => {
                let c = Cluster::ensure(&args.pg_cluster, args.pg_port).await?;
                let name = format!("credits_faults_{run}");
                let url = c.database(&name).await?;
                pg_database = Some(name);
                cluster = Some(c);
                url
            }
        };
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .build()?;
        let mut launches = Vec::new();
        let mut services = Vec::new();
        for n in 0..replicas {
            let mut launch = Launch::new(&binary, &dir, &database_url, SECRET, &format!("replica{n}"))?;
            launch
                .extra
                .extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            services.push(launch.start(&http).await?);
            launches.push(launch);
        }
        let targets: Vec<Target> = launches
            .iter()
            .map(|l| -> anyhow::Result<Target> {
                Ok(Target {
                    grpc: tonic::transport::Channel::from_shared(l.grpc_url())?.connect_lazy(),
                    http: http.clone(),
                    webhook_url: format!("{}/account/stripe-webhook/", l.http_url()),
                    secret: SECRET.to_owned(),
                    token: None,
                    concurrency: args.concurrency,
                    duration: args.load(),
                    accounts: args.accounts.max(1),
                    run: run.clone(),
                    first_error: Arc::default(),
                    seed_database: None,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let accounts = targets[0].ensure_accounts().await?;
        let mut client = targets[0].client();
        for (n, account) in accounts.iter().enumerate() {
            client
                .grant_credits(targets[0].request(pb::GrantCreditsRequest {
                    account: Some(pb::grant_credits_request::Account::AccountId(account.clone())),
                    credits: FUNDS,
                    idempotency_key: format!("fault-fund-{run}-{n}"),
                    reason: "fault-funds".into(),
                    ..Default::default()
                }))
                .await?;
        }
        let pack = targets[0].sold_pack().await?;
        let traffic = Traffic {
            events: Arc::new(Events::new(SECRET, &pack.stripe_price_id, pack.unit_amount)?),
            targets,
            accounts: Arc::new(accounts),
            holds: false,
            purchases: false,
            run,
        };
        let start = check::snapshots(&traffic, 0)
            .await?
            .iter()
            .map(|s| s.balance)
            .collect();
        Ok((
            Self {
                dir,
                launches,
                traffic,
                http,
                pack_credits: pack.credits,
                start,
                cluster,
                mount,
                pg_database,
            },
            services,
        ))
    }

    /// After the fault, through `replica`: acknowledged calls are there, then everything is
    /// redelivered and replayed, then every account is exact.
    pub(super) async fn judge(
        &self,
        records: &[super::traffic::Record],
        replica: usize,
        concurrency: usize,
    ) -> anyhow::Result<Tally> {
        let mut tally = Tally::default();
        let before = check::snapshots(&self.traffic, replica).await?;
        check::acknowledged_are_there(&self.traffic, records, &before, &mut tally);
        tally.add(check::redeliver(&self.traffic, records, replica, concurrency).await);
        tally.add(check::exact(&self.traffic, records, &self.start, self.pack_credits, replica).await?);
        Ok(tally)
    }

    /// Lines of the replicas' logs that contain `needle`.
    pub(super) fn log_lines(&self, needle: &str) -> Vec<String> {
        self.launches
            .iter()
            .filter_map(|l| std::fs::read_to_string(&l.log).ok())
            .flat_map(|text| {
                text.lines()
                    .filter(|l| l.contains(needle))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Removes what the run made; keeps the logs when it failed.
    pub(super) async fn finish(self, failed: bool) {
        if let (Some(cluster), Some(name)) = (&self.cluster, &self.pg_database) {
            cluster.drop_database(name).await;
        }
        if failed && let Some(mount) = &self.mount {
            // The tmpfs goes with the run: keep a copy of the database beside the logs.
            let _ = Command::new("cp")
                .arg("-a")
                .arg(mount.path())
                .arg(self.dir.join("db-copy"))
                .status();
        }
        drop(self.mount);
        if failed {
            eprintln!("logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The store a scenario runs on, from `--database`.
pub(super) fn store(database: Database) -> Store {
    match database {
        Database::Sqlite => Store::Sqlite { tmpfs: None },
        Database::Postgres => Store::Postgres,
    }
}
