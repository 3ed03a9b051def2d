//! Database connection and migrations, for SQLite (embedded default) and PostgreSQL, the
//! set-wise statement builder of the write path (`sql`) and which errors are worth a retry
//! (`errors`).

pub(crate) mod errors;
pub(crate) mod sql;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use secrecy::ExposeSecret;

use crate::config::Settings;

/// Arbitrary but fixed: the PostgreSQL advisory lock that serialises migrations across replicas.
const MIGRATION_LOCK_KEY: i64 = 0x6372_6564_6974_7301;

/// How long a PostgreSQL statement waits for a lock before it fails.
const LOCK_TIMEOUT: &str = "5s";

/// Opens the read pool. SQLite files use WAL so readers never wait for the writer.
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    open(settings, settings.database_max_connections, 0, Role::Reads).await
}

/// Opens the writer's own connections: one on SQLite (one writer, no busy-timeout queueing),
/// `DATABASE_WRITER_CONNECTIONS` on PostgreSQL. Commits are durable before anyone is answered:
/// SQLite `synchronous=FULL` in WAL mode, PostgreSQL `synchronous_commit=on`.
pub(crate) async fn connect_writer(settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    let sqlite = is_sqlite(settings);
    let connections = u32::try_from(writer_tasks(settings)).unwrap_or(1);
    open(settings, connections, u32::from(sqlite), Role::Writer).await
}

/// Writer tasks, one per writer connection: `DATABASE_WRITER_CONNECTIONS` on PostgreSQL, one on
/// SQLite. A second task on SQLite's one connection only took the queue's next jobs early and
/// waited for the connection with them: it halved the batches (7 debits instead of ~30 at 32
/// callers) and doubled the commits.
pub(crate) fn writer_tasks(settings: &Settings) -> usize {
    if is_sqlite(settings) {
        1
    } else {
        settings.ledger.writer_connections
    }
}

fn is_sqlite(settings: &Settings) -> bool {
    settings.database_url.expose_secret().starts_with("sqlite:")
}

/// What a pool is for: its SQLite pragmas differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Reads,
    Writer,
}

/// How long the read pool waits for a connection: a free one under load, or a new one.
const READS_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the writer waits for a connection. Each writer task holds at most one of its own
/// pool's, so it never waits for a free one: the wait is only for a new connection, which the
/// pool retries while the server refuses it. A stopped server must answer the batch's callers
/// UNAVAILABLE / 503 promptly, not after holding each batch (and the queue behind it) this long.
const WRITER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

async fn open(settings: &Settings, max: u32, min: u32, role: Role) -> Result<DatabaseConnection, DbErr> {
    let acquire_timeout = match role {
        Role::Reads => READS_ACQUIRE_TIMEOUT,
        Role::Writer => WRITER_ACQUIRE_TIMEOUT,
    };
    let mut options = ConnectOptions::new(settings.database_url.expose_secret().to_owned());
    if is_sqlite(settings) {
        // A SQLite connection is a file handle nothing outside can cut, so it is not pinged
        // before each use: that was a hand-off to its thread and back per writer batch and
        // per read. A PostgreSQL connection still is: one a restart or a failover cut while it
        // sat in the pool is replaced before a caller gets it.
        options.test_before_acquire(false);
    }
    options
        .max_connections(max.max(1))
        .min_connections(min)
        // sea-orm gives both to sqlx's one acquire timeout.
        .connect_timeout(acquire_timeout)
        .acquire_timeout(acquire_timeout)
        .sqlx_logging(false)
        // A writer waiting longer than this on a row lock gives up with 55P03, which is
        // answered 503 / UNAVAILABLE so the caller (Stripe) retries, instead of holding a
        // request slot until the request timeout.
        .map_sqlx_postgres_opts(move |opts| {
            let opts = opts
                .options([("lock_timeout", LOCK_TIMEOUT), ("synchronous_commit", "on")])
                .statement_cache_capacity(STATEMENT_CACHE);
            match role {
                // Custom plans for the writer: a generic plan of `IN ($1, …) OR … IN (…)`
                // guesses row counts and may scan a whole table; planning its few statements
                // per batch costs less. Reads keep their cached plans.
                Role::Writer => opts.options([("plan_cache_mode", "force_custom_plan")]),
                Role::Reads => opts,
            }
        })
        .map_sqlx_sqlite_opts(move |opts| {
            let opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5))
                .statement_cache_capacity(STATEMENT_CACHE)
                // Statement journals of multi-row statements stay in memory.
                .pragma("temp_store", "memory");
            match role {
                // `checkpoint_sqlite` copies the WAL back beside the writer, but under steady
                // writes it never catches up with the last frame, and the WAL restarts only
                // from a checkpoint that did: it grew 33 MB/s. So once it holds this many
                // pages the writer checkpoints the little that is left itself, after a commit,
                // and the next batch starts the WAL over; a WAL file grown past the limit is
                // cut back then.
                Role::Writer => opts
                    .pragma("wal_autocheckpoint", WAL_RESTART_PAGES)
                    .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES)
                    .pragma("cache_size", WRITER_CACHE_KIB),
                Role::Reads => opts,
            }
        });
    Database::connect(options).await
}

/// Set-wise statements differ by batch size: keep enough of them prepared.
const STATEMENT_CACHE: usize = 1024;

/// The writer's SQLite page cache (negative: KiB), big enough for the indexes a batch touches.
const WRITER_CACHE_KIB: &str = "-16384";

/// WAL pages (4 KiB) after which the writer checkpoints what is left, so the WAL restarts.
const WAL_RESTART_PAGES: &str = "2048";

/// The size a WAL file is cut back to when it restarts.
const WAL_SIZE_LIMIT_BYTES: &str = "16777216";

/// How often the WAL is copied back into the database file beside the writer: often enough
/// that the writer's own checkpoint (`WAL_RESTART_PAGES`) has little left to copy.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// On SQLite, checkpoints the WAL from a read connection every `CHECKPOINT_EVERY` (PASSIVE: it
/// never waits for, nor blocks, the writer), so the writer's own checkpoints stay short.
pub(crate) fn checkpoint_sqlite(
    reads: DatabaseConnection,
    stop: tokio_util::sync::CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if reads.get_database_backend() != DbBackend::Sqlite {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
            }
            if let Err(err) = reads.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await {
                tracing::debug!(error = %err, "WAL checkpoint skipped");
            }
        }
    }))
}

/// Applies pending migrations. On PostgreSQL one replica at a time, in one transaction.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let txn = db.begin().await?;
            // Another replica may migrate for longer than the lock timeout: wait for it.
            txn.execute_unprepared("SET LOCAL lock_timeout = 0").await?;
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
                .await?;
            Migrator::up(&txn, None).await?;
            txn.commit().await
        }
        _ => Migrator::up(db, None).await,
    }
}

/// `(name, applied)` for every migration, oldest first.
pub(crate) async fn migration_status(db: &DatabaseConnection) -> Result<Vec<(String, bool)>, DbErr> {
    let applied: Vec<String> = Migrator::get_applied_migrations(db)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    Ok(Migrator::migrations()
        .iter()
        .map(|m| (m.name().to_owned(), applied.iter().any(|a| a == m.name())))
        .collect())
}

/// Closes the writer's SQLite connection after a write transaction failed, so the next batch
/// opens a fresh one. A COMMIT that fails (SQLITE_FULL when the disk fills) leaves sqlx counting
/// a transaction that SQLite has not ended: every later "commit" only released a savepoint
/// inside it, answered OK and written nowhere. Closing the connection rolls that back. A no-op
/// on PostgreSQL, whose failed transactions end cleanly.
pub(crate) async fn discard_sqlite_writer_connection(writer: &DatabaseConnection) {
    if writer.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    match writer.get_sqlite_connection_pool().acquire().await {
        Ok(connection) => {
            if let Err(err) = connection.close().await {
                tracing::warn!(error = %err, "closing the failed SQLite writer connection");
            }
        }
        Err(err) => tracing::warn!(error = %err, "no SQLite writer connection to close"),
    }
}

/// Starts a read-write transaction. On SQLite it takes the write lock at `BEGIN`, so two writers
/// queue on the busy timeout instead of failing on a lock upgrade.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        isolation_level: None,
        access_mode: None,
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, writers: &str) -> Settings {
        let vars = [("DATABASE_URL", url), ("DATABASE_WRITER_CONNECTIONS", writers)];
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .expect("valid settings")
    }

    #[test]
    fn sqlite_has_one_writer_task_whatever_the_writer_connections_say() {
        assert_eq!(writer_tasks(&settings("sqlite://credits.db?mode=rwc", "4")), 1);
        assert_eq!(writer_tasks(&settings("postgres://db/credits", "4")), 4);
        assert_eq!(writer_tasks(&settings("postgres://db/credits", "1")), 1);
    }
}
