//! `/api/v1/runs`: enqueue one run (201, with its estimated start and end) or a batch
//! (all or nothing, every invalid item reported), read one or a filtered page, its
//! log, cancel, retry, delete, and clean up finished runs.
//!
//! # Idempotency keys
//! Enqueueing again with the key of a run that is still queued or running returns that
//! run (200, `existing: true`) when the request is the same (task and params); a
//! different request with the same key is a 409 `idempotency_conflict`, since
//! answering with a run of other params would hide the caller's mistake.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody, item_error};
use super::input::{self, JsonBody, Query};
use super::openapi::schema;
use crate::error::Error;
use crate::model::{Run, RunEstimate, RunFilter, RunLog, RunStatus};
use crate::ops::{CancelResult, Enqueue};
use crate::webhook::RunDelivery;

/// Most runs one batch may hold.
const MAX_BATCH: usize = 10_000;

/// A run to enqueue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRun {
    /// The task to run (see `GET /api/v1/tasks`).
    task: String,
    /// The task's parameters, a JSON object keyed by parameter name.
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
    /// Lower runs first; default the task's.
    priority: Option<i32>,
    /// Start no earlier than this time (RFC 3339); not with `delay`.
    #[serde(default, deserialize_with = "input::time")]
    run_at: Option<DateTime<Utc>>,
    /// Start after this delay, e.g. `10m`; not with `run_at`.
    delay: Option<String>,
    /// Limit of one attempt, e.g. `5m`; default the task's.
    timeout: Option<String>,
    /// Retries after a failed attempt; default the task's.
    max_retries: Option<u32>,
    /// Key/value tags to find the run by.
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// While a run with this key is queued or running, return it instead of adding one.
    idempotency_key: Option<String>,
    /// Never start the run if it has not started this long after now, e.g. `1h`.
    ttl: Option<String>,
    /// POST the finished run as JSON to this URL.
    callback_url: Option<String>,
}

impl CreateRun {
    /// The request for the front door; `at` prefixes field names (`runs[3].`).
    fn to_enqueue(&self, at: &str) -> Result<Enqueue, ApiError> {
        let field = |f: &str| format!("{at}{f}");
        let mut e = Enqueue::new(self.task.clone());
        if let Some(p) = &self.params {
            e = e.params(p.clone());
        }
        if let Some(p) = self.priority {
            e = e.priority(p);
        }
        if let Some(t) = self.run_at {
            e = e.at(t);
        }
        if let Some(d) = &self.delay {
            e = e.delay(input::duration(&field("delay"), d)?);
        }
        if let Some(t) = &self.timeout {
            e = e.timeout(input::duration(&field("timeout"), t)?);
        }
        if let Some(n) = self.max_retries {
            e = e.max_retries(n);
        }
        for (k, v) in &self.tags {
            e = e.tag(k.clone(), v.clone());
        }
        if let Some(k) = &self.idempotency_key {
            e = e.idempotency_key(k.clone());
        }
        if let Some(t) = &self.ttl {
            e = e.ttl(input::duration(&field("ttl"), t)?);
        }
        if let Some(u) = &self.callback_url {
            e = e.callback_url(u.clone());
        }
        Ok(e)
    }
}

/// A run just enqueued (or the existing run of its idempotency key).
#[derive(Serialize, ToSchema)]
pub(crate) struct RunCreated {
    #[schema(value_type = schema::Run)]
    run: Run,
    /// True when the run of this idempotency key was returned instead of a new one.
    existing: bool,
    /// When it should start and end (`null` unless queued).
    #[schema(value_type = Option<schema::RunEstimate>)]
    estimate: Option<RunEstimate>,
}

/// Enqueue a run.
#[utoipa::path(
    post, operation_id = "runs_create", path = "/api/v1/runs", tag = "runs", request_body = CreateRun,
    security((), ("bearer" = [])),
    responses(
        (status = 201, description = "Enqueued", body = RunCreated),
        (status = 200, description = "The run of this idempotency key, still unfinished", body = RunCreated),
        (status = 400, description = "Invalid request (unknown task, bad params, bad field)", body = ErrorBody),
        (status = 409, description = "The idempotency key belongs to a different request", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<CreateRun>,
) -> Result<Response, ApiError> {
    let enqueued = st.admin.enqueue(req.to_enqueue("")?).await?;
    let run = st.admin.run(enqueued.id).await?;
    let estimate = st.admin.estimate(&run).await?;
    let status = if enqueued.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(RunCreated {
            run,
            existing: enqueued.existing,
            estimate,
        }),
    )
        .into_response())
}

/// Runs to enqueue together.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBatch {
    /// The runs, each as `POST /api/v1/runs` takes it.
    #[schema(value_type = Vec<CreateRun>)]
    runs: Vec<Value>,
}

/// One run of a batch.
#[derive(Serialize, ToSchema)]
pub(crate) struct BatchItem {
    /// The run's id.
    id: i64,
    /// True when the unfinished run of its idempotency key was returned.
    existing: bool,
}

/// What a batch did.
#[derive(Serialize, ToSchema)]
pub(crate) struct BatchCreated {
    /// One entry per item, in order.
    runs: Vec<BatchItem>,
    /// Runs added (not returned by idempotency key).
    enqueued: usize,
}

/// Enqueue runs in one transaction: all or nothing.
///
/// When any item is invalid nothing is enqueued, and the 400 answer lists every
/// invalid item in `error.details.errors` with its `index` (from 0).
#[utoipa::path(
    post, operation_id = "runs_batch", path = "/api/v1/runs/batch", tag = "runs", request_body = CreateBatch,
    security((), ("bearer" = [])),
    responses(
        (status = 201, description = "Every run enqueued", body = BatchCreated),
        (status = 400, description = "Some items are invalid; nothing was enqueued", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
    )
)]
pub(crate) async fn batch(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<CreateBatch>,
) -> Result<Response, ApiError> {
    let total = req.runs.len();
    if total == 0 {
        return Err(ApiError::field("runs", "the batch holds no runs"));
    }
    if total > MAX_BATCH {
        return Err(ApiError::field(
            "runs",
            format!("{total} runs; a batch holds at most {MAX_BATCH}"),
        ));
    }
    // Every item is read on its own, so one bad item does not hide the others.
    let mut items = Vec::with_capacity(total);
    let mut positions = Vec::with_capacity(total);
    let mut errors: Vec<(usize, Value)> = Vec::new();
    for (i, v) in req.runs.into_iter().enumerate() {
        let at = format!("runs[{i}].");
        // Serde would take an array for the fields in order: say what an item is.
        if !v.is_object() {
            errors.push((
                i,
                serde_json::json!({
                    "index": i, "code": "invalid_input", "field": format!("runs[{i}]"),
                    "message": format!(
                        "runs[{i}]: must be a JSON object, as POST /api/v1/runs takes a run, \
                         not {}",
                        crate::task::json_kind(&v)
                    ),
                }),
            ));
            continue;
        }
        let parsed = serde_path_to_error::deserialize::<_, CreateRun>(v)
            .map_err(|e| {
                let path = e.path().to_string();
                let msg = input::serde_message(&e.into_inner().to_string());
                let field = if path == "." {
                    format!("runs[{i}]")
                } else {
                    format!("{at}{path}")
                };
                ApiError::field(&field, msg)
            })
            .and_then(|r| r.to_enqueue(&at));
        match parsed {
            Ok(e) => {
                items.push(e);
                positions.push(i);
            }
            Err(e) => errors.push((
                i,
                serde_json::json!({
                    "index": i, "code": e.code, "message": e.message,
                    "field": e.details.get("field"),
                }),
            )),
        }
    }
    if !errors.is_empty() {
        // Check the readable items too, so every problem is reported at once.
        if let Err(Error::Batch { errors: more, .. }) = st.admin.prepare_many(items).await {
            errors.extend(
                more.iter()
                    .map(|(j, e)| (positions[*j], item_error(positions[*j], e))),
            );
        }
        errors.sort_by_key(|(i, _)| *i);
        return Err(invalid_batch(total, errors.into_iter().map(|(_, v)| v)));
    }
    match st.admin.enqueue_many(items).await {
        Ok(done) => {
            let enqueued = done.iter().filter(|e| !e.existing).count();
            Ok((
                StatusCode::CREATED,
                Json(BatchCreated {
                    runs: done
                        .into_iter()
                        .map(|e| BatchItem {
                            id: e.id,
                            existing: e.existing,
                        })
                        .collect(),
                    enqueued,
                }),
            )
                .into_response())
        }
        Err(Error::Batch { errors, .. }) => Err(invalid_batch(
            total,
            errors.iter().map(|(j, e)| item_error(positions[*j], e)),
        )),
        Err(e) => Err(e.into()),
    }
}

fn invalid_batch(total: usize, errors: impl Iterator<Item = Value>) -> ApiError {
    let errors: Vec<Value> = errors.collect();
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_batch",
        format!(
            "{} of {total} runs are invalid, nothing was enqueued; see details.errors",
            errors.len()
        ),
    )
    .with_details(serde_json::json!({ "total": total, "errors": errors }))
}

/// Query parameters of `GET /api/v1/runs`.
const LIST_PARAMS: &[&str] = &[
    "status",
    "task",
    "queue",
    "job",
    "tag",
    "created_after",
    "created_before",
    "page",
    "page_size",
];

/// Runs, newest first, one page at a time.
#[utoipa::path(
    get, operation_id = "runs_list", path = "/api/v1/runs", tag = "runs",
    params(
        ("status" = Option<String>, Query, description = "Only these statuses: repeat or separate with commas (queued, running, succeeded, failed, timed_out, cancelled, expired)"),
        ("task" = Option<String>, Query, description = "Only runs of this task"),
        ("queue" = Option<String>, Query, description = "Only runs in this queue"),
        ("job" = Option<String>, Query, description = "Only runs of this job"),
        ("tag" = Option<String>, Query, description = "Only runs with this tag, key=value; repeat to require several"),
        ("created_after" = Option<String>, Query, description = "Enqueued at or after: RFC 3339, or an age such as 1h"),
        ("created_before" = Option<String>, Query, description = "Enqueued before: RFC 3339, or an age such as 1h"),
        ("page" = Option<u64>, Query, description = "Page number, from 1"),
        ("page_size" = Option<u64>, Query, description = "Runs per page (default 50, at most 10000)"),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of runs", body = schema::RunPage),
        (status = 400, description = "Invalid or unknown filter", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<crate::model::RunPage>, ApiError> {
    let now = st.admin.now();
    let mut q = Query::parse(raw.as_deref());
    let mut f = RunFilter::new();
    for s in q.all("status") {
        f.status.push(
            s.parse::<RunStatus>()
                .map_err(|e| ApiError::field("status", e))?,
        );
    }
    f.task = q.one("task")?;
    f.queue = q.one("queue")?;
    f.job = q.one("job")?;
    for t in q.all_raw("tag") {
        f.tags.push(input::tag("tag", &t)?);
    }
    if let Some(s) = q.one("created_after")? {
        f.created_after = Some(input::since("created_after", &s, now)?);
    }
    if let Some(s) = q.one("created_before")? {
        f.created_before = Some(input::since("created_before", &s, now)?);
    }
    let page: u64 = q.parsed("page")?.unwrap_or(1);
    if page == 0 {
        return Err(ApiError::field("page", "pages are numbered from 1"));
    }
    let page_size: u64 = q.parsed("page_size")?.unwrap_or(50);
    if page_size == 0 {
        return Err(ApiError::field("page_size", "must be at least 1"));
    }
    q.finish(LIST_PARAMS)?;
    f = f.page(page, page_size);
    Ok(Json(st.admin.runs(&f).await?))
}

/// A run in full.
#[derive(Serialize, ToSchema)]
pub(crate) struct RunDetail {
    #[serde(flatten)]
    #[schema(inline, value_type = schema::Run)]
    run: Run,
    /// When a queued run should start and end.
    #[schema(value_type = Option<schema::RunEstimate>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    estimate: Option<RunEstimate>,
    /// Its webhook delivery attempts, oldest first.
    #[schema(value_type = Vec<Object>)]
    deliveries: Vec<RunDelivery>,
}

/// One run: status, progress, stage, timestamps, attempts, result or error, history.
#[utoipa::path(
    get, operation_id = "runs_show", path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The run", body = RunDetail),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub(crate) async fn show(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RunDetail>, ApiError> {
    Query::parse(raw.as_deref()).finish(&[])?;
    let id = input::run_id(&id)?;
    let run = st.admin.run(id).await?;
    let estimate = st.admin.estimate(&run).await?;
    let deliveries = st.admin.deliveries(id).await?;
    Ok(Json(RunDetail {
        run,
        estimate,
        deliveries,
    }))
}

/// A run's log lines.
#[derive(Serialize, ToSchema)]
pub(crate) struct Logs {
    /// Oldest first.
    #[schema(value_type = Vec<schema::RunLog>)]
    logs: Vec<RunLog>,
    /// Pass as `after` to read only newer lines.
    next_after: i64,
}

/// The lines a run's task wrote with `ctx.log`, oldest first.
#[utoipa::path(
    get, operation_id = "runs_logs", path = "/api/v1/runs/{id}/logs", tag = "runs",
    params(
        ("id" = i64, Path, description = "Run id"),
        ("after" = Option<i64>, Query, description = "Only lines after this line id (for polling)"),
        ("limit" = Option<u64>, Query, description = "At most this many lines (default and maximum 10000)"),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Log lines", body = Logs),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub(crate) async fn logs(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Logs>, ApiError> {
    let id = input::run_id(&id)?;
    let mut q = Query::parse(raw.as_deref());
    let after: i64 = q.parsed("after")?.unwrap_or(0);
    let limit: u64 = q.parsed("limit")?.unwrap_or(10_000);
    q.finish(&["after", "limit"])?;
    if after > 0 {
        // `run_logs` tells a missing run from an empty log only from the start.
        st.admin.run(id).await?;
    }
    let logs = st.admin.run_logs(id, after.max(0), limit).await?;
    let next_after = logs.last().map_or(after, |l| l.id);
    Ok(Json(Logs { logs, next_after }))
}

/// What a cancel did.
#[derive(Serialize, ToSchema)]
pub(crate) struct Cancelled {
    /// The run after the cancel.
    #[schema(value_type = schema::Run)]
    run: Run,
    /// `cancelled` (it was queued) or `requested` (it is running: its node stops it
    /// cooperatively, then drops it after a grace period).
    #[schema(value_type = String)]
    outcome: CancelResult,
}

/// Cancel a queued or running run.
#[utoipa::path(
    post, operation_id = "runs_cancel", path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled, or cancel requested", body = Cancelled),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run already finished", body = ErrorBody),
    )
)]
pub(crate) async fn cancel(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Cancelled>, ApiError> {
    let id = input::run_id(&id)?;
    let outcome = st.admin.cancel_run(id).await?;
    let run = st.admin.run(id).await?;
    Ok(Json(Cancelled { run, outcome }))
}

/// Queue a failed, timed-out or cancelled run again as its next attempt.
#[utoipa::path(
    post, operation_id = "runs_retry", path = "/api/v1/runs/{id}/retry", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Queued again", body = schema::Run),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run is queued, running or succeeded", body = ErrorBody),
    )
)]
pub(crate) async fn retry(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Run>, ApiError> {
    let id = input::run_id(&id)?;
    Ok(Json(st.admin.retry_run(id).await?))
}

/// What a delete did.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeletedRun {
    id: i64,
    deleted: bool,
    /// The status it had.
    #[schema(value_type = String)]
    status: RunStatus,
}

/// Delete a run that is not running, with its history and logs.
#[utoipa::path(
    delete, operation_id = "runs_delete", path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Deleted", body = DeletedRun),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run is running: cancel it first", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeletedRun>, ApiError> {
    let id = input::run_id(&id)?;
    let status = st.admin.delete_run(id).await?;
    Ok(Json(DeletedRun {
        id,
        deleted: true,
        status,
    }))
}

/// Which finished runs to delete.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cleanup {
    /// Finished more than this long ago, e.g. `24h` or `7d`.
    older_than: String,
    /// Only these final statuses (default: every finished status).
    #[serde(default)]
    status: Vec<String>,
}

/// How many runs a cleanup deleted.
#[derive(Serialize, ToSchema)]
pub(crate) struct CleanedUp {
    deleted: u64,
}

/// Delete finished runs older than an age, with their history and logs.
#[utoipa::path(
    post, operation_id = "runs_cleanup", path = "/api/v1/runs/cleanup", tag = "runs", request_body = Cleanup,
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "How many runs were deleted", body = CleanedUp),
        (status = 400, description = "Invalid age or status", body = ErrorBody),
    )
)]
pub(crate) async fn cleanup(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<Cleanup>,
) -> Result<Json<CleanedUp>, ApiError> {
    let older_than = input::duration("older_than", &req.older_than)?;
    let statuses = req
        .status
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<RunStatus>()
                .map_err(|e| ApiError::field(&format!("status[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let deleted = st.admin.cleanup_runs(older_than, &statuses).await?;
    Ok(Json(CleanedUp { deleted }))
}
