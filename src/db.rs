//! Database connection and migrations, for SQLite (embedded default) and PostgreSQL.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, TransactionTrait,
};
use secrecy::ExposeSecret;

use crate::config::Settings;

/// Arbitrary but fixed: the PostgreSQL advisory lock that serialises migrations across replicas.
const MIGRATION_LOCK_KEY: i64 = 0x6372_6564_6974_7301;

/// How long a PostgreSQL statement waits for a lock before it fails.
const LOCK_TIMEOUT: &str = "5s";

/// Opens the pool. SQLite files use WAL so readers never wait for the writer.
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(settings.database_url.expose_secret().to_owned());
    options
        .max_connections(settings.database_max_connections)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        // A writer waiting longer than this on a row lock gives up with 55P03, which is
        // answered 503 / UNAVAILABLE so the caller (Stripe) retries, instead of holding a
        // request slot until the request timeout.
        .map_sqlx_postgres_opts(|opts| opts.options([("lock_timeout", LOCK_TIMEOUT)]));
    let db = Database::connect(options).await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
    }
    Ok(db)
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
pub async fn migration_status(db: &DatabaseConnection) -> Result<Vec<(String, bool)>, DbErr> {
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
