//! Node rows: each process running the scheduler registers itself, beats a heartbeat
//! and marks itself stopped on shutdown.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Value};

use super::{Store, StoreError, ms};

/// Identity of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Unique id.
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// Process id.
    pub pid: u32,
    /// Worker slots.
    pub max_workers: usize,
}

impl Store {
    /// Records the node as running.
    pub async fn register_node(
        &self,
        node: &NodeInfo,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .execute_raw(self.stmt(
                "INSERT INTO kairos_nodes (id, hostname, pid, max_workers, status, started_at, heartbeat_at) \
                 VALUES ($1, $2, $3, $4, 'running', $5, $5)",
                [
                    Value::from(node.id.clone()),
                    Value::from(node.hostname.clone()),
                    Value::from(node.pid as i32),
                    Value::from(node.max_workers as i32),
                    Value::from(ms(now)),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Records that the node is alive.
    pub async fn heartbeat(&self, node: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.db
            .execute_raw(self.stmt(
                "UPDATE kairos_nodes SET heartbeat_at = $1 WHERE id = $2",
                [Value::from(ms(now)), Value::from(node.to_string())],
            ))
            .await?;
        Ok(())
    }

    /// Records that the node stopped.
    pub async fn stop_node(&self, node: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.db
            .execute_raw(self.stmt(
                "UPDATE kairos_nodes SET status = 'stopped', heartbeat_at = $1 WHERE id = $2",
                [Value::from(ms(now)), Value::from(node.to_string())],
            ))
            .await?;
        Ok(())
    }
}
