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
        if let Some(e) = unknown_queue(name, &self.queues().await?) {
            return Err(e);
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

    /// The node with this id, if it is still recorded.
    pub async fn node(&self, id: &str) -> Result<Option<NodeInfo>, Error> {
        Ok(self.store().node(id).await?)
    }

    /// Pauses or resumes one node (by id, or by name when no id matches), or every
    /// node including those that start later (`None`). Returns the nodes' state after
    /// the change.
    pub async fn set_nodes_paused(
        &self,
        node: Option<&str>,
        paused: bool,
    ) -> Result<Vec<NodeInfo>, Error> {
        let id = match node {
            Some(key) => Some(find_node(&self.nodes().await?, key)?),
            None => None,
        };
        self.store().set_nodes_paused(id.as_deref(), paused).await?;
        self.runs_changed();
        Ok(match id {
            Some(id) => self.node(&id).await?.into_iter().collect(),
            None => self.nodes().await?,
        })
    }
}

/// The id of the node `key` names: its id, else its name. Several nodes may share a
/// name (a restarted pod keeps it); the one live among them is meant, and when that
/// does not settle it the operator is asked for an id.
fn find_node(nodes: &[NodeInfo], key: &str) -> Result<String, Error> {
    if nodes.iter().any(|n| n.id == key) {
        return Ok(key.to_string());
    }
    let named: Vec<&NodeInfo> = nodes.iter().filter(|n| n.name == key).collect();
    let live: Vec<&NodeInfo> = named.iter().copied().filter(|n| is_live(n)).collect();
    match (named.as_slice(), live.as_slice()) {
        ([one], _) | (_, [one]) => Ok(one.id.clone()),
        ([], _) => {
            let candidates: Vec<&str> = nodes
                .iter()
                .flat_map(|n| [n.name.as_str(), n.id.as_str()])
                .collect();
            Err(Error::NodeNotFound {
                name: key.to_string(),
                hint: crate::suggest::hint_listing(
                    key,
                    &candidates,
                    &known_nodes(nodes),
                    "no node has run yet",
                ),
            })
        }
        (many, _) => {
            // The live ones are those meant; with none, the most recent few.
            let shown: Vec<&NodeInfo> = if live.is_empty() {
                let mut recent = many.to_vec();
                recent.sort_by_key(|n| std::cmp::Reverse(n.started_at));
                recent.truncate(5);
                recent
            } else {
                live.clone()
            };
            Err(Error::Conflict {
                message: format!(
                    "{} nodes are named `{key}` and {} alive; give the id of the one you mean: \
                     {}{}",
                    many.len(),
                    match live.len() {
                        0 => "none is".to_string(),
                        n => format!("{n} are"),
                    },
                    shown
                        .iter()
                        .map(|n| format!("{} ({})", n.id, n.status))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if shown.len() < many.len() {
                        " (`kairos nodes list` shows them all)"
                    } else {
                        ""
                    }
                ),
            })
        }
    }
}

/// The names of `nodes` for an error message: each once, the live ones first (a name
/// is shared by every restart of a pod), and where to find the ids, which are too long
/// to list.
fn known_nodes(nodes: &[NodeInfo]) -> String {
    let mut live: Vec<&str> = Vec::new();
    let mut others: Vec<&str> = Vec::new();
    for n in nodes.iter().filter(|n| is_live(n)) {
        if !live.contains(&n.name.as_str()) {
            live.push(&n.name);
        }
    }
    for n in nodes.iter().filter(|n| !is_live(n)) {
        if !live.contains(&n.name.as_str()) && !others.contains(&n.name.as_str()) {
            others.push(&n.name);
        }
    }
    let list = |names: &[&str]| crate::suggest::list_names(names.iter().copied(), 20);
    let mut parts = Vec::new();
    if live.is_empty() {
        parts.push("no node is live".to_string());
    } else {
        parts.push(format!("live nodes: {}", list(&live)));
    }
    if !others.is_empty() {
        parts.push(format!("stopped or dead: {}", list(&others)));
    }
    parts.push("`kairos nodes list` shows their ids".to_string());
    parts.join("; ")
}

/// Whether the node is running and heard from recently.
fn is_live(n: &NodeInfo) -> bool {
    n.alive && n.status == "running"
}

/// A not-found error with a did-you-mean when `name` is none of `queues`.
pub(crate) fn unknown_queue(name: &str, queues: &[QueueInfo]) -> Option<Error> {
    if queues.iter().any(|q| q.name == name) {
        return None;
    }
    let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    Some(Error::QueueNotFound {
        name: name.to_string(),
        hint: crate::suggest::hint(name, &names, "queues", "there are no queues yet"),
    })
}
