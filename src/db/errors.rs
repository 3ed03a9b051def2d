//! Which database errors are passing faults, worth a retry, read by backend.

use sea_orm::{DbErr, RuntimeErr, sqlx};

/// Connection loss, pool exhaustion, lock waits and server shutdown: a retry may succeed.
/// Database error codes are read by backend, since SQLite's numeric codes and PostgreSQL's
/// SQLSTATEs overlap as text.
pub(crate) fn is_transient(err: &DbErr) -> bool {
    match err {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                    postgres_code_is_transient(&code)
                } else {
                    sqlite_code_is_transient(&code)
                }
            }
            _ => false,
        },
        _ => false,
    }
}

/// SQLSTATEs worth a retry: serialization failure, deadlock, lock timeout, connection
/// exceptions (08), insufficient resources (53) and server shutdown or restart (57P0x).
fn postgres_code_is_transient(code: &str) -> bool {
    matches!(code, "40001" | "40P01" | "55P03")
        || code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P0")
}

/// SQLite result codes worth a retry, with their extended codes: BUSY (5) and LOCKED (6), and
/// the file system failing under the database: READONLY (8), IOERR (10) and FULL (13), as
/// PostgreSQL's class 53 (disk full) is. Nothing was written; Stripe and callers retry once an
/// operator has made room, instead of the event being recorded as failed for good.
fn sqlite_code_is_transient(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 13))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_transient_codes_are_the_documented_classes_only() {
        for code in [
            "40001", "40P01", "55P03", "08006", "08001", "53300", "53100", "57P01", "57P03",
        ] {
            assert!(postgres_code_is_transient(code), "{code}");
        }
        // 42501 once looked transient because 42501 & 0xff == 5, SQLite's BUSY.
        for code in [
            "42501", "23505", "22P02", "42P01", "57014", "40002", "25P02", "XX000",
        ] {
            assert!(!postgres_code_is_transient(code), "{code}");
        }
    }

    #[test]
    fn sqlite_busy_locked_and_file_system_faults_are_transient_in_every_extended_form() {
        for code in [
            "5", "6", "261", "517", "773", "262", "8", "1032", "10", "778", "13",
        ] {
            assert!(sqlite_code_is_transient(code), "{code}");
        }
        for code in ["19", "1811", "2067", "1", "11", "14"] {
            assert!(!sqlite_code_is_transient(code), "{code}");
        }
    }
}
