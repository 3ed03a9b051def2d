//! Set-wise statements for the write path: one statement for a whole batch, whatever its size
//! (multi-row `VALUES`, `UPDATE … FROM (VALUES …)`), with positional parameters written the
//! way the connection's backend wants them (`$1` on PostgreSQL, `?` on SQLite).

use sea_orm::{DbBackend, Statement, Value};

/// A statement under construction: SQL text and its parameters, in order.
pub(crate) struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            text: String::with_capacity(256),
            values: Vec::new(),
        }
    }

    /// Appends SQL text as it is.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends one parameter placeholder and its value.
    pub(crate) fn param(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.values.len().to_string());
            }
            _ => self.text.push('?'),
        }
        self
    }

    /// Appends `p1, p2, …` for a list of values (the inside of an `IN (…)`).
    pub(crate) fn list<V: Into<Value>>(&mut self, values: impl IntoIterator<Item = V>) -> &mut Self {
        for (n, value) in values.into_iter().enumerate() {
            if n > 0 {
                self.text.push_str(", ");
            }
            self.param(value);
        }
        self
    }

    /// Appends `(a, b), (c, d), …`: one parenthesised tuple per row.
    pub(crate) fn rows<R>(&mut self, rows: &[R], row: impl Fn(&R) -> Vec<Value>) -> &mut Self {
        for (n, item) in rows.iter().enumerate() {
            self.text.push_str(if n == 0 { "(" } else { ", (" });
            self.list(row(item));
            self.text.push(')');
        }
        self
    }

    pub(crate) fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_backend() {
        for (backend, expected) in [
            (
                DbBackend::Postgres,
                "WITH v(id, n) AS (VALUES ($1, $2), ($3, $4)) SELECT * FROM t WHERE id IN ($5, $6)",
            ),
            (
                DbBackend::Sqlite,
                "WITH v(id, n) AS (VALUES (?, ?), (?, ?)) SELECT * FROM t WHERE id IN (?, ?)",
            ),
        ] {
            let mut sql = Sql::new(backend);
            sql.push("WITH v(id, n) AS (VALUES ")
                .rows(&[("a", 1_i64), ("b", 2)], |(id, n)| {
                    vec![(*id).into(), (*n).into()]
                })
                .push(") SELECT * FROM t WHERE id IN (")
                .list(["a", "b"])
                .push(")");
            let statement = sql.build();
            assert_eq!(statement.sql, expected);
            assert_eq!(statement.values.map(|v| v.0.len()), Some(6));
        }
    }
}
