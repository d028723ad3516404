//! Operations on queues and nodes: listings with their load, and pausing. Paused means
//! no new runs start; running ones continue and queued ones stay queued.

use super::Admin;
use crate::error::Error;
use crate::model::{NodeInfo, QueueInfo};

impl Admin {
    /// Every queue: declared, used by a task, or holding unfinished runs.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>, Error> {
        Ok(self.store().queues().await?)
    }

    /// Pauses (`true`) or resumes a queue.
    pub async fn set_queue_paused(&self, name: &str, paused: bool) -> Result<QueueInfo, Error> {
        let queues = self.queues().await?;
        if !queues.iter().any(|q| q.name == name) {
            let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
            return Err(Error::QueueNotFound {
                name: name.to_string(),
                hint: crate::suggest::hint(name, &names, "queues", "there are no queues yet"),
            });
        }
        self.store()
            .set_queue_paused(name, paused, self.now())
            .await?;
        self.runs_changed();
        let queues = self.queues().await?;
        queues
            .into_iter()
            .find(|q| q.name == name)
            .ok_or_else(|| Error::QueueNotFound {
                name: name.to_string(),
                hint: String::new(),
            })
    }

    /// Every node that ran against this database, most recent first.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, Error> {
        Ok(self.store().nodes().await?)
    }

    /// Pauses or resumes one node (by id), or every node including those that start
    /// later (`None`). Returns the nodes' state after the change.
    pub async fn set_nodes_paused(
        &self,
        node: Option<&str>,
        paused: bool,
    ) -> Result<Vec<NodeInfo>, Error> {
        if let Some(id) = node {
            let nodes = self.nodes().await?;
            if !nodes.iter().any(|n| n.id == id) {
                let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
                return Err(Error::NodeNotFound {
                    name: id.to_string(),
                    hint: crate::suggest::hint(id, &ids, "nodes", "no node has run yet"),
                });
            }
        }
        self.store().set_nodes_paused(node, paused).await?;
        self.runs_changed();
        let nodes = self.nodes().await?;
        Ok(match node {
            Some(id) => nodes.into_iter().filter(|n| n.id == id).collect(),
            None => nodes,
        })
    }
}
