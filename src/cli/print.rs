//! How the subcommands print times.

use chrono::{DateTime, Utc};

/// A time as the CLI prints it, or "never".
pub(super) fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "never".to_owned(),
        |at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}
