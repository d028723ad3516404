//! Queues, nodes and tasks: `/api/v1/queues` (depth, running, limits; pause and
//! resume), `/api/v1/nodes` (with heartbeats and whether each is alive; pause and
//! resume one, or all) and
//! `/api/v1/tasks` (what can be enqueued, with its params' JSON Schema).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::input::Query;
use super::openapi::schema;
use crate::model::{NodeInfo, QueueInfo, TaskInfo};

/// Every queue.
#[derive(Serialize, ToSchema)]
pub(crate) struct QueueList {
    #[schema(value_type = Vec<schema::QueueInfo>)]
    queues: Vec<QueueInfo>,
}

/// Every queue: declared, used by a task, or holding unfinished runs.
#[utoipa::path(
    get, operation_id = "cluster_queues", path = "/api/v1/queues", tag = "cluster",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Every queue with its load and limits", body = QueueList))
)]
pub(crate) async fn queues(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<QueueList>, ApiError> {
    Query::parse(raw.as_deref()).finish(&[])?;
    Ok(Json(QueueList {
        queues: st.admin.queues().await?,
    }))
}

/// Start no new runs from a queue (running ones continue; queued ones wait).
#[utoipa::path(
    post, operation_id = "cluster_pause_queue", path = "/api/v1/queues/{name}/pause", tag = "cluster",
    params(("name" = String, Path, description = "Queue name")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The paused queue", body = schema::QueueInfo),
        (status = 404, description = "No such queue", body = ErrorBody),
    )
)]
pub(crate) async fn pause_queue(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<QueueInfo>, ApiError> {
    Ok(Json(st.admin.set_queue_paused(&name, true).await?))
}

/// Start runs from a queue again.
#[utoipa::path(
    post, operation_id = "cluster_resume_queue", path = "/api/v1/queues/{name}/resume", tag = "cluster",
    params(("name" = String, Path, description = "Queue name")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The resumed queue", body = schema::QueueInfo),
        (status = 404, description = "No such queue", body = ErrorBody),
    )
)]
pub(crate) async fn resume_queue(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<QueueInfo>, ApiError> {
    Ok(Json(st.admin.set_queue_paused(&name, false).await?))
}

/// Every node.
#[derive(Serialize, ToSchema)]
pub(crate) struct NodeList {
    #[schema(value_type = Vec<schema::NodeInfo>)]
    nodes: Vec<NodeInfo>,
}

/// Every node that ran against this database, most recent first, with heartbeats.
#[utoipa::path(
    get, operation_id = "cluster_nodes", path = "/api/v1/nodes", tag = "cluster",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Every node", body = NodeList))
)]
pub(crate) async fn nodes(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<NodeList>, ApiError> {
    Query::parse(raw.as_deref()).finish(&[])?;
    Ok(Json(NodeList {
        nodes: st.admin.nodes().await?,
    }))
}

/// Every task.
#[derive(Serialize, ToSchema)]
pub(crate) struct TaskList {
    #[schema(value_type = Vec<schema::TaskInfo>)]
    tasks: Vec<TaskInfo>,
}

/// Every task nodes registered, with effective policies and params schema.
#[utoipa::path(
    get, operation_id = "cluster_tasks", path = "/api/v1/tasks", tag = "cluster",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Every task", body = TaskList))
)]
pub(crate) async fn tasks(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<TaskList>, ApiError> {
    Query::parse(raw.as_deref()).finish(&[])?;
    Ok(Json(TaskList {
        tasks: st.admin.tasks().await?,
    }))
}

/// Start no new runs on a node (running ones continue).
#[utoipa::path(
    post, operation_id = "cluster_pause_node", path = "/api/v1/nodes/{id}/pause", tag = "cluster",
    params(("id" = String, Path, description = "Node id, or its name when no id matches")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The node after the change", body = NodeList),
        (status = 404, description = "No such node", body = ErrorBody),
        (status = 409, description = "Several nodes have that name; give an id", body = ErrorBody),
    )
)]
pub(crate) async fn pause_node(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeList>, ApiError> {
    Ok(Json(NodeList {
        nodes: st.admin.set_nodes_paused(Some(&id), true).await?,
    }))
}

/// Start runs on a node again.
#[utoipa::path(
    post, operation_id = "cluster_resume_node", path = "/api/v1/nodes/{id}/resume", tag = "cluster",
    params(("id" = String, Path, description = "Node id, or its name when no id matches")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The node after the change", body = NodeList),
        (status = 404, description = "No such node", body = ErrorBody),
        (status = 409, description = "Several nodes have that name; give an id", body = ErrorBody),
    )
)]
pub(crate) async fn resume_node(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeList>, ApiError> {
    Ok(Json(NodeList {
        nodes: st.admin.set_nodes_paused(Some(&id), false).await?,
    }))
}

/// Start no new runs on any node, nodes that start later included (running ones
/// continue), as `kairos nodes pause` without an id.
#[utoipa::path(
    post, operation_id = "cluster_pause_nodes", path = "/api/v1/nodes/pause", tag = "cluster",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Every node after the change", body = NodeList))
)]
pub(crate) async fn pause_nodes(State(st): State<AppState>) -> Result<Json<NodeList>, ApiError> {
    Ok(Json(NodeList {
        nodes: st.admin.set_nodes_paused(None, true).await?,
    }))
}

/// Start runs on every node again, nodes paused one by one included, as `kairos nodes
/// resume` without an id.
#[utoipa::path(
    post, operation_id = "cluster_resume_nodes", path = "/api/v1/nodes/resume", tag = "cluster",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Every node after the change", body = NodeList))
)]
pub(crate) async fn resume_nodes(State(st): State<AppState>) -> Result<Json<NodeList>, ApiError> {
    Ok(Json(NodeList {
        nodes: st.admin.set_nodes_paused(None, false).await?,
    }))
}
