//! Errors as people read them: an error and its causes on one line.

/// An error and its causes on one line (`outer: cause: root`), for logs and the event store.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
