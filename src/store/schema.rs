//! Keeping the schema right: applying migrations safely when many processes start at
//! once, checking that every table, column and index is there, and repairing what was
//! dropped.
//!
//! # Concurrent start-up
//! Migrations run inside one write transaction that first takes a lock: an advisory
//! transaction lock on PostgreSQL (whose `CREATE TABLE IF NOT EXISTS` is not safe
//! against a concurrent creator), `BEGIN IMMEDIATE` on SQLite. The second process waits,
//! then finds everything applied. A process that finds the schema current does not take
//! the lock at all.
//!
//! # Repair
//! Every migration statement is idempotent, so when a table or index is missing although
//! its migration is recorded (dropped by hand), running the migrations again re-creates
//! it (empty). A missing column cannot be re-created that way: it is reported with what
//! to do.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::{ConnectionTrait, TransactionTrait};
use sea_orm_migration::{MigratorTrait, SchemaManager};

use super::migration::{
    FORMER_JOB_INDEXES, INDEXES, INSIGHT_INDEXES, LEAN_INDEXES, Migrator, REPLACED_INDEXES, TABLES,
};
use super::{Lock, Store, StoreError, write_txn};

/// What `migrate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MigrateReport {
    /// Migrations applied now.
    pub(crate) applied: Vec<String>,
    /// Tables and indexes re-created because they were missing.
    pub(crate) repaired: Vec<String>,
}

/// What is missing from the schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Missing {
    tables: Vec<&'static str>,
    columns: Vec<(&'static str, Vec<&'static str>)>,
    indexes: Vec<&'static str>,
}

impl Missing {
    fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.columns.is_empty() && self.indexes.is_empty()
    }

    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.tables {
            out.push(format!("table {t} is missing"));
        }
        for (t, cols) in &self.columns {
            out.push(format!(
                "table {t} lacks the column(s) {}: it was changed outside kairos; restore it \
                 from a backup, or drop the table and run `kairos migrate` to re-create it \
                 (its rows are lost)",
                cols.join(", ")
            ));
        }
        for i in &self.indexes {
            out.push(format!("index {i} is missing"));
        }
        out
    }
}

impl Store {
    /// Applies pending migrations and repairs missing tables and indexes, safely when
    /// several processes do it at once.
    pub(crate) async fn migrate(&self) -> Result<MigrateReport, StoreError> {
        if self.pending().await?.is_empty() && self.missing(&self.db).await?.is_empty() {
            return Ok(MigrateReport::default());
        }
        let txn = self.db.begin_with_options(write_txn()).await?;
        self.lock(&txn, Lock::Schema).await?;
        // Re-read under the lock: another process may have done it meanwhile.
        let pending = self.pending_in(&txn).await?;
        Migrator::up(&txn, None).await?;
        let mut report = MigrateReport {
            applied: pending,
            repaired: Vec::new(),
        };
        let missing = self.missing(&txn).await?;
        if !missing.tables.is_empty() || !missing.indexes.is_empty() {
            let manager = SchemaManager::new(&txn);
            for m in Migrator::migrations() {
                m.up(&manager).await?;
            }
            report.repaired.extend(
                missing
                    .tables
                    .iter()
                    .map(|t| format!("table {t} (re-created empty)")),
            );
            report
                .repaired
                .extend(missing.indexes.iter().map(|i| format!("index {i}")));
        }
        let still = self.missing(&txn).await?;
        if !still.is_empty() {
            return Err(StoreError::Damaged {
                url: self.url.clone(),
                problems: still.problems(),
            });
        }
        txn.commit().await?;
        if !report.repaired.is_empty() {
            tracing::warn!(repaired = ?report.repaired, "repaired the kairos schema");
        }
        Ok(report)
    }

    /// For admin commands: the database must already hold kairos tables; an older
    /// schema is migrated, a damaged one is an error that says to run `kairos migrate`.
    pub(crate) async fn upgrade_existing(&self) -> Result<(), StoreError> {
        let missing = self.missing(&self.db).await?;
        if missing.tables.len() == TABLES.len() {
            return Err(StoreError::NotInitialised {
                url: self.url.clone(),
            });
        }
        // An older schema lacks what newer migrations add: apply them first.
        if !self.pending().await?.is_empty() {
            self.migrate().await?;
            return Ok(());
        }
        if !missing.is_empty() {
            let mut problems = missing.problems();
            if !missing.tables.is_empty() || !missing.indexes.is_empty() {
                problems.push("run `kairos migrate` to re-create what is missing".into());
            }
            return Err(StoreError::Damaged {
                url: self.url.clone(),
                problems,
            });
        }
        Ok(())
    }

    async fn pending(&self) -> Result<Vec<String>, StoreError> {
        self.pending_in(&self.db).await
    }

    /// Names of the migrations not recorded as applied.
    async fn pending_in<C: ConnectionTrait>(&self, conn: &C) -> Result<Vec<String>, StoreError> {
        // Ask the catalogue first: a failed query would abort a PostgreSQL transaction.
        let exists_sql = if self.is_pg() {
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'kairos_migrations'"
        } else {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'kairos_migrations'"
        };
        let exists = conn
            .query_one_raw(self.stmt(exists_sql, []))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0)
            > 0;
        let applied: BTreeSet<String> = if exists {
            conn.query_all_raw(self.stmt("SELECT version FROM kairos_migrations", []))
                .await?
                .iter()
                .map(|r| r.try_get::<String>("", "version"))
                .collect::<Result<_, _>>()?
        } else {
            BTreeSet::new()
        };
        Ok(Migrator::migrations()
            .iter()
            .map(|m| m.name().to_string())
            .filter(|n| !applied.contains(n))
            .collect())
    }

    /// Tables, columns and indexes the current schema needs that are not there.
    async fn missing<C: ConnectionTrait>(&self, conn: &C) -> Result<Missing, StoreError> {
        let (columns_sql, indexes_sql) = if self.is_pg() {
            (
                "SELECT table_name AS t, column_name AS c FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name LIKE 'kairos%'",
                "SELECT indexname AS i FROM pg_indexes WHERE schemaname = current_schema() \
                 AND indexname LIKE 'kairos%'",
            )
        } else {
            (
                "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND m.name LIKE 'kairos%'",
                "SELECT name AS i FROM sqlite_master WHERE type = 'index' AND name LIKE 'kairos%'",
            )
        };
        let mut present: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in conn.query_all_raw(self.stmt(columns_sql, [])).await? {
            present
                .entry(r.try_get("", "t")?)
                .or_default()
                .insert(r.try_get("", "c")?);
        }
        let indexes: BTreeSet<String> = conn
            .query_all_raw(self.stmt(indexes_sql, []))
            .await?
            .iter()
            .map(|r| r.try_get::<String>("", "i"))
            .collect::<Result<_, _>>()?;
        let mut missing = Missing::default();
        for (table, cols) in TABLES {
            match present.get(*table) {
                None => missing.tables.push(table),
                Some(have) => {
                    let lacking: Vec<&str> = cols
                        .iter()
                        .copied()
                        .filter(|c| !have.contains(*c))
                        .collect();
                    if !lacking.is_empty() {
                        missing.columns.push((table, lacking));
                    }
                }
            }
        }
        let expected = INDEXES
            .iter()
            .chain(INSIGHT_INDEXES)
            .chain(LEAN_INDEXES)
            .chain(FORMER_JOB_INDEXES)
            .filter(|(name, _)| !REPLACED_INDEXES.contains(name));
        for (name, _) in expected {
            let table_missing = missing
                .tables
                .iter()
                .any(|t| name.starts_with(&format!("{t}_")));
            if !indexes.contains(*name) && !table_missing {
                missing.indexes.push(name);
            }
        }
        Ok(missing)
    }
}
