//! How a packs file (its packs and plans) can be unusable.

/// Why the packs file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PackFileError {
    #[error("cannot read packs file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {field}: {reason}")]
    Invalid {
        path: String,
        line: usize,
        field: String,
        reason: String,
    },
}
