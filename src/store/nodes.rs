//! Node rows: each process running the scheduler registers itself, beats a heartbeat,
//! may be paused by an operator, and marks itself stopped on shutdown.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::codec::{int, ms, node_info};
use super::entity::node;
use super::{Store, StoreError, bump, write_txn};
use crate::model::NodeInfo;

/// Identity of a node, as it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeRow {
    pub(crate) id: String,
    pub(crate) hostname: String,
    pub(crate) pid: u32,
    pub(crate) max_workers: usize,
}

impl Store {
    /// Records the node as running; it starts paused while every node is paused
    /// (`kairos nodes pause` without an id).
    pub(crate) async fn register_node(
        &self,
        node: &NodeRow,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .execute_raw(self.stmt(
                "INSERT INTO kairos_nodes (id, hostname, pid, version, max_workers, status, paused, started_at, heartbeat_at) \
                 VALUES ($1, $2, $3, $4, $5, 'running', \
                 COALESCE((SELECT value FROM kairos_meta WHERE key = 'nodes_paused'), 0) <> 0, $6, $6)",
                [
                    Value::from(node.id.clone()),
                    Value::from(node.hostname.clone()),
                    Value::from(i32::try_from(node.pid).unwrap_or(i32::MAX)),
                    Value::from(env!("CARGO_PKG_VERSION")),
                    Value::from(int(u32::try_from(node.max_workers).unwrap_or(u32::MAX))),
                    Value::from(ms(now)),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Records that the node is alive.
    pub(crate) async fn heartbeat(&self, node: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.db
            .execute_raw(self.stmt(
                "UPDATE kairos_nodes SET heartbeat_at = $1 WHERE id = $2",
                [Value::from(ms(now)), Value::from(node.to_string())],
            ))
            .await?;
        Ok(())
    }

    /// Records that the node stopped.
    pub(crate) async fn stop_node(&self, node: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.db
            .execute_raw(self.stmt(
                "UPDATE kairos_nodes SET status = 'stopped', heartbeat_at = $1 WHERE id = $2",
                [Value::from(ms(now)), Value::from(node.to_string())],
            ))
            .await?;
        Ok(())
    }

    /// Every node, most recently started first, with its running count.
    pub(crate) async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let mut running = std::collections::HashMap::new();
        for r in self
            .db
            .query_all_raw(self.stmt(
                "SELECT node_id, COUNT(*) AS n FROM kairos_runs WHERE status = 'running' GROUP BY node_id",
                [],
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
                "SELECT * FROM kairos_nodes ORDER BY started_at DESC, id",
                [],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let m = node::Model::from_query_result(r, "")?;
                let n = running.get(&m.id).copied().unwrap_or(0);
                Ok(node_info(m, n))
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
