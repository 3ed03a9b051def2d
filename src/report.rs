//! Errors as people read them: an error and its causes on one line.

/// An error and its causes on one line (`outer: cause: root`), each said once, for the
/// command line, logs and the event store. A cause whose text the line already holds is left
/// out: sea-orm's and sqlx's errors repeat their source in their own message.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn chain(texts: &[&'static str]) -> Layer {
        texts
            .iter()
            .rev()
            .fold(None, |source, text| {
                Some(Layer {
                    text,
                    source: source.map(Box::new),
                })
            })
            .expect("at least one layer")
    }

    #[test]
    fn every_cause_is_said_once_in_order() {
        let err = chain(&[
            "cannot listen on 127.0.0.1:1",
            "Address already in use (os error 98)",
        ]);
        assert_eq!(
            error_chain(&err),
            "cannot listen on 127.0.0.1:1: Address already in use (os error 98)"
        );
    }

    #[test]
    fn a_cause_the_line_already_holds_is_left_out() {
        // As sea-orm's DbErr, sqlx's Error and SQLite's error nest.
        let err = chain(&[
            "database",
            "Execution Error: error returned from database: (code: 8) attempt to write a readonly database",
            "error returned from database: (code: 8) attempt to write a readonly database",
            "(code: 8) attempt to write a readonly database",
        ]);
        assert_eq!(
            error_chain(&err),
            "database: Execution Error: error returned from database: (code: 8) attempt to write a readonly database"
        );
    }
}
