//! Node rows: each process running the scheduler registers itself, beats a heartbeat,
//! may be paused by an operator, and marks itself stopped on shutdown.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::codec::{duration_ms, int, ms, node_info};
use super::entity::node;
use super::sql::columns;
use super::{Store, StoreError, bump, write_txn};
use crate::model::NodeInfo;

/// Identity of a node, as it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeRow {
    pub(crate) id: String,
    /// What operators call it (`[scheduler] node_name`, else `<hostname>:<pid>`).
    pub(crate) name: String,
    pub(crate) hostname: String,
    pub(crate) pid: u32,
    pub(crate) max_workers: usize,
    /// How long it may stay silent before it counts as dead (its own setting).
    pub(crate) heartbeat_timeout: std::time::Duration,
}

/// The name of a node its operator did not name, and of nodes registered before
/// names existed: `<hostname>:<pid>`.
pub(crate) fn default_name(hostname: &str, pid: impl std::fmt::Display) -> String {
    format!("{hostname}:{pid}")
}

/// What a heartbeat looks for besides recording the beat.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BeatLook {
    /// Another node silent this long (on the database's clock) is due to be declared
    /// dead.
    pub(crate) dead_after: std::time::Duration,
    /// A running run whose lease ends before this has ended its lease.
    pub(crate) leases_before: DateTime<Utc>,
    /// Event subscribers that beat since this are watching.
    pub(crate) watchers_since: DateTime<Utc>,
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Beat {
    /// The node still counted as alive: false when another node had declared it dead
    /// meanwhile and its runs were taken back (it counts as alive again from now).
    pub(crate) alive: bool,
    /// The database's time the beat recorded, in milliseconds: a reading of the
    /// database's clock that costs no statement of its own. `None` means the node has
    /// no record: it was forgotten (see [`Store::forget_nodes`]) or deleted by hand.
    pub(crate) at_ms: Option<i64>,
    /// Some other node has been silent for too long.
    pub(crate) silent_nodes: bool,
    /// Some running run's lease has ended.
    pub(crate) ended_leases: bool,
    /// Another process subscribes to the event log.
    pub(crate) watched: bool,
    /// The node is paused (by itself or with every node).
    pub(crate) paused: bool,
}

impl Store {
    /// Records the node as running; it starts paused while every node is paused
    /// (`kairos nodes pause` without an id), or when `paused` (a node registering again
    /// keeps the pause its lost record had).
    pub(crate) async fn register_node(
        &self,
        node: &NodeRow,
        paused: bool,
    ) -> Result<(), StoreError> {
        // On PostgreSQL the flag is read under a share lock: a pause of every node
        // committing meanwhile (it updates the flag, then every node's row) is then
        // either waited for and seen, or waits for this row and pauses it too. Read
        // without it, a node registering at that moment missed the pause. SQLite runs
        // one writer at a time.
        let lock = if self.is_pg() { " FOR SHARE" } else { "" };
        self.db
            .execute_raw(self.stmt(
                &format!(
                    "INSERT INTO kairos_nodes (id, name, hostname, pid, version, max_workers, status, paused, started_at, heartbeat_at, heartbeat_timeout_ms) \
                     VALUES ($1, $6, $2, $3, $4, $5, 'running', \
                     ($7 OR COALESCE((SELECT value FROM kairos_meta WHERE key = 'nodes_paused'{lock}), 0) <> 0), {now}, {now}, $8) \
                     ON CONFLICT (id) DO NOTHING",
                    now = self.db_now_ms()
                ),
                [
                    Value::from(node.id.clone()),
                    Value::from(node.hostname.clone()),
                    Value::from(i32::try_from(node.pid).unwrap_or(i32::MAX)),
                    Value::from(env!("CARGO_PKG_VERSION")),
                    Value::from(int(u32::try_from(node.max_workers).unwrap_or(u32::MAX))),
                    Value::from(node.name.clone()),
                    Value::from(paused),
                    Value::from(duration_ms(node.heartbeat_timeout)),
                ],
            ))
            .await?;
        Ok(())
    }

    /// The database's clock, in milliseconds since the epoch: the time nodes agree on.
    pub(crate) async fn db_time_ms(&self) -> Result<i64, StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(&format!("SELECT {} AS now", self.db_now_ms()), []))
            .await?
            .ok_or_else(|| {
                StoreError::Db(sea_orm::DbErr::RecordNotFound("the database's time".into()))
            })?;
        Ok(row.try_get::<i64>("", "now")?)
    }

    /// Records that the node is alive (on the database's clock) and, in the same
    /// statement, looks at what else a beat may have to act on (see [`Beat`]): an idle
    /// node's beat is this one statement.
    pub(crate) async fn heartbeat(&self, node: &str, look: &BeatLook) -> Result<Beat, StoreError> {
        let _turn = self.periodic_write_turn().await;
        let now = self.db_now_ms();
        // Subqueries in `RETURNING` read the database as it was before this statement
        // (PostgreSQL) or see this node's new beat (SQLite): either way, `id <> $1`
        // leaves this node out.
        let returning = format!(
            "RETURNING heartbeat_at, paused, \
             CASE WHEN EXISTS (SELECT 1 FROM kairos_nodes o WHERE o.status = 'running' \
             AND o.heartbeat_at < {now} - COALESCE(o.heartbeat_timeout_ms, $2) AND o.id <> $1) \
             THEN 1 ELSE 0 END AS silent, \
             CASE WHEN EXISTS (SELECT 1 FROM kairos_runs WHERE status = 'running' \
             AND lease_until < $3) THEN 1 ELSE 0 END AS expired, \
             CASE WHEN EXISTS (SELECT 1 FROM kairos_subscribers WHERE heartbeat_at >= $4 \
             AND id <> $1) THEN 1 ELSE 0 END AS watched"
        );
        let values = || {
            [
                Value::from(node.to_string()),
                Value::from(i64::try_from(look.dead_after.as_millis()).unwrap_or(i64::MAX)),
                Value::from(ms(look.leases_before)),
                Value::from(ms(look.watchers_since)),
            ]
        };
        let beat = |row: Option<sea_orm::QueryResult>, alive: bool| -> Result<Beat, StoreError> {
            let Some(r) = row else {
                return Ok(Beat::default());
            };
            let flag =
                |col: &str| -> Result<bool, StoreError> { Ok(r.try_get::<i32>("", col)? != 0) };
            Ok(Beat {
                alive,
                at_ms: Some(r.try_get::<i64>("", "heartbeat_at")?),
                silent_nodes: flag("silent")?,
                ended_leases: flag("expired")?,
                watched: flag("watched")?,
                paused: r.try_get::<bool>("", "paused")?,
            })
        };
        let row = self
            .db
            .query_one_raw(self.stmt(
                &format!(
                    "UPDATE kairos_nodes SET heartbeat_at = {now} WHERE id = $1 AND status <> 'dead' \
                     {returning}"
                ),
                values(),
            ))
            .await?;
        if row.is_some() {
            return beat(row, true);
        }
        let row = self
            .db
            .query_one_raw(self.stmt(
                &format!(
                    "UPDATE kairos_nodes SET heartbeat_at = {now}, status = 'running' WHERE id = $1 \
                     {returning}"
                ),
                values(),
            ))
            .await?;
        beat(row, false)
    }

    /// Declares dead every running node other than `me` whose last heartbeat is older
    /// than its own heartbeat timeout (`timeout` for nodes that did not record one) on
    /// the database's clock, and ends the leases of their running runs so that
    /// [`Store::recover_expired`] takes them back. Returns the nodes declared dead, by
    /// id and name. It takes the write lock: a beat calls it only when
    /// [`Store::heartbeat`] found a silent node.
    pub(crate) async fn declare_dead_nodes(
        &self,
        me: &str,
        timeout: std::time::Duration,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let timeout_ms = Value::from(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        let txn = self.db.begin_with_options(write_txn()).await?;
        let rows = txn
            .query_all_raw(self.stmt(
                &format!(
                    "UPDATE kairos_nodes SET status = 'dead' WHERE status = 'running' \
                     AND heartbeat_at < {} - COALESCE(heartbeat_timeout_ms, $1) AND id <> $2 \
                     RETURNING id, name, hostname, pid",
                    self.db_now_ms()
                ),
                [timeout_ms, Value::from(me.to_string())],
            ))
            .await?;
        let dead = rows
            .iter()
            .map(|r| {
                let id: String = r.try_get("", "id")?;
                let name: Option<String> = r.try_get("", "name")?;
                let name = match name {
                    Some(n) => n,
                    None => default_name(
                        &r.try_get::<String>("", "hostname")?,
                        r.try_get::<i32>("", "pid")?,
                    ),
                };
                Ok((id, name))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        for (id, _) in &dead {
            txn.execute_raw(self.stmt(
                "UPDATE kairos_runs SET lease_until = 0 WHERE status = 'running' AND node_id = $1",
                [Value::from(id.clone())],
            ))
            .await?;
        }
        txn.commit().await?;
        Ok(dead)
    }

    /// Records that the node stopped.
    pub(crate) async fn stop_node(&self, node: &str) -> Result<(), StoreError> {
        self.db
            .execute_raw(self.stmt(
                &format!(
                    "UPDATE kairos_nodes SET status = 'stopped', heartbeat_at = {} WHERE id = $1",
                    self.db_now_ms()
                ),
                [Value::from(node.to_string())],
            ))
            .await?;
        Ok(())
    }

    /// Forgets nodes that stopped or were declared dead and have not beaten for
    /// `kept` (on the database's clock), unless a run is still recorded as theirs.
    /// Returns how many went.
    pub(crate) async fn forget_nodes(&self, kept: std::time::Duration) -> Result<u64, StoreError> {
        let kept = i64::try_from(kept.as_millis()).unwrap_or(i64::MAX);
        let done = self
            .db
            .execute_raw(self.stmt(
                &format!(
                    "DELETE FROM kairos_nodes WHERE (status = 'stopped' OR status = 'dead') \
                     AND heartbeat_at < {} - $1 AND NOT EXISTS (SELECT 1 FROM kairos_runs r \
                     WHERE r.status = 'running' AND r.node_id = kairos_nodes.id)",
                    self.db_now_ms()
                ),
                [Value::from(kept)],
            ))
            .await?;
        Ok(done.rows_affected())
    }

    /// Every node, most recently started first, with its running count.
    pub(crate) async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        self.nodes_where(None).await
    }

    /// The node with this id, with its running count.
    pub(crate) async fn node(&self, id: &str) -> Result<Option<NodeInfo>, StoreError> {
        Ok(self.nodes_where(Some(id)).await?.pop())
    }

    /// Every node, or the one with the id `only`.
    async fn nodes_where(&self, only: Option<&str>) -> Result<Vec<NodeInfo>, StoreError> {
        let (of_node, of_id, values) = match only {
            Some(id) => (
                " AND node_id = $1",
                " WHERE id = $1",
                vec![Value::from(id.to_string())],
            ),
            None => ("", "", Vec::new()),
        };
        let mut running = std::collections::HashMap::new();
        for r in self
            .db
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT node_id, COUNT(*) AS n FROM kairos_runs WHERE status = 'running'\
                     {of_node} GROUP BY node_id"
                ),
                values.clone(),
            ))
            .await?
        {
            let id: Option<String> = r.try_get("", "node_id")?;
            let n: i64 = r.try_get("", "n")?;
            if let Some(id) = id {
                running.insert(id, u64::try_from(n).unwrap_or(0));
            }
        }
        let rows = self
            .db
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT {}, {} AS db_now FROM kairos_nodes{of_id} ORDER BY started_at DESC, id",
                    columns::<node::Entity>(),
                    self.db_now_ms()
                ),
                values,
            ))
            .await?;
        let default = duration_ms(crate::runtime::DEFAULT_HEARTBEAT_TIMEOUT);
        rows.iter()
            .map(|r| {
                let m = node::Model::from_query_result(r, "")?;
                let db_now: i64 = r.try_get("", "db_now")?;
                let n = running.get(&m.id).copied().unwrap_or(0);
                // Judged by the node's own timeout, as the nodes it runs with judge it.
                let fresh = m.heartbeat_timeout_ms.unwrap_or(default);
                let alive = m.status == "running" && m.heartbeat_at >= db_now - fresh;
                Ok(node_info(m, n, alive))
            })
            .collect()
    }

    /// Pauses or resumes one node (by id), or every node (`None`), including those
    /// that start later. A node's own row is what its claims read. Returns how many
    /// node rows matched.
    pub(crate) async fn set_nodes_paused(
        &self,
        node: Option<&str>,
        paused: bool,
    ) -> Result<u64, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        let n = match node {
            Some(id) => txn
                .execute_raw(self.stmt(
                    "UPDATE kairos_nodes SET paused = $1 WHERE id = $2",
                    [Value::from(paused), Value::from(id.to_string())],
                ))
                .await?
                .rows_affected(),
            None => {
                txn.execute_raw(self.stmt(
                    "UPDATE kairos_meta SET value = $1 WHERE key = 'nodes_paused'",
                    [Value::from(i64::from(paused))],
                ))
                .await?;
                txn.execute_raw(
                    self.stmt("UPDATE kairos_nodes SET paused = $1", [Value::from(paused)]),
                )
                .await?
                .rows_affected()
            }
        };
        bump(&txn, self).await?;
        txn.commit().await?;
        Ok(n)
    }
}
