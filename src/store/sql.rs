//! Statement building shared by the queries: kairos writes SQL with `$1`-style
//! placeholders, which both sqlx-sqlite and sqlx-postgres bind by position.

use sea_orm::{DbBackend, Statement, Value};

pub(crate) fn stmt<I>(backend: DbBackend, sql: &str, values: I) -> Statement
where
    I: IntoIterator<Item = Value>,
{
    Statement::from_sql_and_values(backend, sql, values)
}

/// `$start, $start+1, ...` for `n` values, e.g. for an `IN (...)` list.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    let mut s = String::with_capacity(n * 5);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('$');
        s.push_str(&(start + i).to_string());
    }
    s
}
