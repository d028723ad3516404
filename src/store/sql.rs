//! Statement building shared by the queries. kairos writes SQL with `$1`-style
//! placeholders; for SQLite they are rewritten to anonymous `?` with the values laid
//! out in order of appearance.
//!
//! Why: SQLite looks a named or numbered parameter up with a linear scan of the
//! statement's parameter list, and sqlx asks for every parameter's name when binding,
//! so binding n numbered parameters costs O(n²). With the thousands of parameters of a
//! batched insert or claim that dominated the whole run time; anonymous `?` parameters
//! have no names to scan.
//!
//! # Status names in SQL
//! Statuses that vary (a completion's final status, a listing's filter) are bound as
//! values. `status = 'queued'` and `status = 'running'` stay written in the statements
//! that must use the partial indexes on queued and running runs: a planner can only use
//! such an index when the query's condition visibly implies the index's, which a bound
//! parameter does not. A test below checks that every status the store's SQL names is
//! a [`RunStatus`](crate::RunStatus).

use sea_orm::{DbBackend, EntityTrait, IdenStatic, Iterable, Statement, Value};

/// The fence's test of a run's status in statements that address runs by id: the same
/// as `status = 'running'`, written as a range so that it does not imply the predicate
/// of `kairos_runs_running`. Otherwise SQLite (which has no statistics) always, and
/// PostgreSQL with statistics gathered while no run was running, preferred scanning
/// every running run of the node (and, on PostgreSQL, the index entries that earlier
/// runs left behind) to looking the ids up: completing 1,000 runs took 300 ms, and
/// draining 100,000 runs with 1,024 workers ran at 3,000 runs/s instead of 45,000.
/// Only the primary key serves these statements.
pub(super) const RUNNING_BY_ID: &str = "status BETWEEN 'running' AND 'running'";

/// The columns of entity `E`'s table, comma-separated, for a `SELECT` of whole rows.
///
/// Why not `SELECT *`: the star is expanded when a statement is prepared. A pooled
/// connection that last read the schema before a migration added a column (the
/// migration ran on another connection of the same pool, or in a newer process)
/// prepares it with the old columns; SQLite then re-prepares it with the new ones
/// while stepping, and sqlx reads the rows with the old column count, out of bounds.
/// A cached PostgreSQL statement whose row type changes fails with "cached plan must
/// not change result type". A listed column that the stale schema lacks makes SQLite
/// re-read the schema and prepare again, and the row type never changes.
pub(crate) fn columns<E: EntityTrait>() -> String {
    E::Column::iter()
        .map(|c| c.as_str().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn stmt<I>(backend: DbBackend, sql: &str, values: I) -> Statement
where
    I: IntoIterator<Item = Value>,
{
    let values: Vec<Value> = values.into_iter().collect();
    if backend != DbBackend::Sqlite {
        return Statement::from_sql_and_values(backend, sql, values);
    }
    let (sql, values) = positional(sql, &values);
    Statement::from_sql_and_values(backend, sql, values)
}

/// Rewrites `$N` placeholders to `?`, repeating values that are referenced twice.
/// kairos's SQL has no `$` inside string literals, so a plain scan suffices.
fn positional(sql: &str, values: &[Value]) -> (String, Vec<Value>) {
    let mut out = String::with_capacity(sql.len());
    let mut ordered = Vec::with_capacity(values.len());
    let bytes = sql.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit() {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            let n: usize = sql[start..end].parse().expect("placeholder number");
            out.push_str(&sql[copied..i]);
            out.push('?');
            ordered.push(values[n - 1].clone());
            i = end;
            copied = end;
        } else {
            i += 1;
        }
    }
    out.push_str(&sql[copied..]);
    (out, ordered)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The store's files that hold SQL, for the tests that read it.
    const SOURCES: &[(&str, &str)] = &[
        ("catalog.rs", include_str!("catalog.rs")),
        ("claim.rs", include_str!("claim.rs")),
        ("complete.rs", include_str!("complete.rs")),
        ("connect.rs", include_str!("connect.rs")),
        ("control.rs", include_str!("control.rs")),
        ("deliveries.rs", include_str!("deliveries.rs")),
        ("events.rs", include_str!("events.rs")),
        ("jobs.rs", include_str!("jobs.rs")),
        ("metrics.rs", include_str!("metrics.rs")),
        ("migration.rs", include_str!("migration.rs")),
        ("mod.rs", include_str!("mod.rs")),
        ("nodes.rs", include_str!("nodes.rs")),
        ("queues.rs", include_str!("queues.rs")),
        ("reports.rs", include_str!("reports.rs")),
        ("retention.rs", include_str!("retention.rs")),
        ("run_reads.rs", include_str!("run_reads.rs")),
        ("runs.rs", include_str!("runs.rs")),
        ("schema.rs", include_str!("schema.rs")),
        ("slots.rs", include_str!("slots.rs")),
        ("stats.rs", include_str!("stats.rs")),
    ];

    #[test]
    fn every_status_written_in_the_stores_sql_is_a_run_status() {
        let mut seen = 0;
        for (_, src) in SOURCES {
            for marker in [
                "status = '",
                "status <> '",
                "THEN '",
                "ELSE '",
                "SET status = '",
            ] {
                for (i, _) in src.match_indices(marker) {
                    let rest = &src[i + marker.len()..];
                    let name = &rest[..rest.find('\'').unwrap()];
                    if marker.ends_with("THEN '") && name.contains(' ') {
                        continue; // an error text, not a status
                    }
                    if name == "{status}" {
                        continue; // formatted from the enum
                    }
                    assert!(
                        // Node statuses share the column name.
                        name.parse::<crate::RunStatus>().is_ok()
                            || ["stopped", "dead"].contains(&name),
                        "`{name}` after `{marker}` is not a run status"
                    );
                    seen += 1;
                }
            }
            for (i, _) in src.match_indices("status IN (") {
                let rest = &src[i + "status IN (".len()..];
                let list = &rest[..rest.find(')').unwrap()];
                for item in list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| s.starts_with('\''))
                {
                    let name = item.trim_matches('\'');
                    assert!(
                        name.parse::<crate::RunStatus>().is_ok(),
                        "`{name}` in `status IN`"
                    );
                    seen += 1;
                }
            }
        }
        assert!(seen > 20, "the scan found the statements ({seen})");
    }

    /// See [`columns`]: a whole row is read through its listed columns.
    #[test]
    fn no_statement_of_the_store_selects_star() {
        for (file, src) in SOURCES {
            let upper = src.to_uppercase();
            assert!(
                !upper.contains("SELECT *") && !upper.contains(".*,"),
                "{file} selects `*`: list the columns with `columns::<Entity>()`"
            );
        }
        assert!(columns::<super::super::entity::node::Entity>().starts_with("id, "));
    }

    #[test]
    fn numbered_placeholders_become_positional_in_order_of_use() {
        let values = [Value::from(10), Value::from(20), Value::from(30)];
        let (sql, v) = positional(
            "UPDATE t SET a = $2, b = $1 WHERE c = $3 OR d = $2",
            &values,
        );
        assert_eq!(sql, "UPDATE t SET a = ?, b = ? WHERE c = ? OR d = ?");
        assert_eq!(
            v,
            vec![
                Value::from(20),
                Value::from(10),
                Value::from(30),
                Value::from(20)
            ]
        );
    }

    #[test]
    fn multi_digit_numbers_and_text_after_the_last_placeholder() {
        let values: Vec<Value> = (1..=12).map(Value::from).collect();
        let (sql, v) = positional("VALUES ($12, $1) RETURNING id", &values);
        assert_eq!(sql, "VALUES (?, ?) RETURNING id");
        assert_eq!(v, vec![Value::from(12), Value::from(1)]);
    }
}
