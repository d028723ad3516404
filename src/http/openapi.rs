//! The OpenAPI 3.1 document: its header (title, version, the bearer scheme, tags), the
//! schemas of the records the library returns, and the endpoint that serves it.
//!
//! The records ([`Run`](crate::Run), [`Job`](crate::Job), ...) serialize with custom
//! field names (`timeout_ms`, a flattened policy, a schedule object), so their schemas
//! are written out here as documentation-only mirrors rather than derived on the
//! types themselves; `tests/http_openapi.rs` checks the mirrors against real responses
//! so they cannot drift unnoticed.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kairos",
        description = "Jobs, runs, queues and nodes of a kairos scheduler: the operations of \
                       the admin CLI over HTTP, with live events and metrics. Errors are \
                       `{\"error\": {\"code\", \"message\", \"details\"}}`.",
    ),
    modifiers(&Bearer),
    tags(
        (name = "runs", description = "Enqueue, inspect, cancel, retry and delete runs"),
        (name = "jobs", description = "Schedules: list, create, change, pause, resume, trigger"),
        (name = "cluster", description = "Queues, nodes and the tasks they registered"),
        (name = "insight", description = "Statistics, health and Prometheus metrics"),
        (name = "events", description = "Live events over Server-Sent Events or WebSocket"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Needed on mutating endpoints when the server has a token \
                         (KAIROS_ADMIN_TOKEN), and on reads too with --protect-reads. \
                         Missing: 401; wrong: 403.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds the 400 answer every operation can give (a path or query parameter that does
/// not parse, or an unknown query parameter) to the operations whose own description
/// lists no 400, so that a client validating answers against the document accepts it.
pub(crate) fn complete(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let bad_request = ResponseBuilder::new()
        .description("A path or query parameter that does not parse, or an unknown one")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            op.responses
                .responses
                .entry("400".to_string())
                .or_insert_with(|| bad_request.clone().into());
        }
    }
}

/// The document's header, before the routes add their paths.
pub(crate) fn base() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get, operation_id = "openapi_document", path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub(crate) async fn document(State(st): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        st.openapi.as_str().to_string(),
    )
}

/// Documentation-only mirrors of the records' JSON shapes (see the module doc).
#[allow(dead_code)]
pub(crate) mod schema {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};
    use serde_json::Value;
    use utoipa::ToSchema;

    /// A run: one execution of a task, with its attempts so far.
    #[derive(ToSchema)]
    pub(crate) struct Run {
        id: i64,
        task: String,
        queue: String,
        job_id: Option<i64>,
        /// The job's name, if the job still exists.
        job: Option<String>,
        /// `enqueue`, `schedule`, `catch_up` or `manual`.
        origin: String,
        #[schema(value_type = Object)]
        params: Value,
        tags: BTreeMap<String, String>,
        /// `queued`, `running`, `succeeded`, `failed`, `timed_out`, `cancelled`, `expired`.
        status: String,
        priority: i32,
        run_at: DateTime<Utc>,
        scheduled_for: DateTime<Utc>,
        attempt: u32,
        max_attempts: u32,
        max_retries: u32,
        retry_delay_ms: u64,
        timeout_ms: u64,
        node_id: Option<String>,
        lease_until: Option<DateTime<Utc>>,
        cancel_requested: bool,
        idempotency_key: Option<String>,
        /// Any JSON value the task returned (a number, a string, an object...), or null.
        result: Option<Value>,
        error: Option<String>,
        created_at: DateTime<Utc>,
        started_at: Option<DateTime<Utc>>,
        finished_at: Option<DateTime<Utc>>,
        expires_at: Option<DateTime<Utc>>,
        /// 0 to 100.
        progress: Option<u8>,
        progress_message: Option<String>,
        stage: Option<String>,
        /// Any JSON value the task returned or saved, or null.
        checkpoint: Option<Value>,
        callback_url: Option<String>,
        /// Earlier attempts and other events (on a single run only).
        history: Option<Vec<RunEvent>>,
    }

    /// One entry of a run's history.
    #[derive(ToSchema)]
    pub(crate) struct RunEvent {
        attempt: u32,
        at: DateTime<Utc>,
        /// `retried`, `failed`, `timed_out`, `snoozed`, `recovered`, `released`,
        /// `manual_retry`, `cancelled`.
        event: String,
        message: Option<String>,
        node_id: Option<String>,
    }

    /// When a queued run should start and end.
    #[derive(ToSchema)]
    pub(crate) struct RunEstimate {
        /// Queued runs a claim takes before this one.
        ahead: u64,
        start: DateTime<Utc>,
        /// `null` when the task has no recent duration to go by.
        completion: Option<DateTime<Utc>>,
        /// Why it will not start until somebody acts (a paused queue, every node
        /// paused, no live node), else `null`.
        held: Option<String>,
    }

    /// One page of runs, newest first.
    #[derive(ToSchema)]
    pub(crate) struct RunPage {
        runs: Vec<Run>,
        /// How many runs match the filter in all.
        total: u64,
        page: u64,
        page_size: u64,
    }

    /// A line a task wrote to its run's log.
    #[derive(ToSchema)]
    pub(crate) struct RunLog {
        id: i64,
        run_id: i64,
        attempt: u32,
        at: DateTime<Utc>,
        /// `trace`, `debug`, `info`, `warn` or `error`.
        level: String,
        message: String,
    }

    /// A job's schedule as stored.
    #[derive(ToSchema)]
    pub(crate) struct Schedule {
        /// `cron`, `interval` or `once`.
        kind: String,
        /// One line for people.
        text: String,
        cron: Option<String>,
        timezone: Option<String>,
        /// `debian`, `skip` or `both`.
        dst: Option<String>,
        interval_ms: Option<u64>,
        at: Option<DateTime<Utc>>,
    }

    /// A persisted schedule that fires runs of a task.
    #[derive(ToSchema)]
    pub(crate) struct Job {
        id: i64,
        name: String,
        task: String,
        schedule: Schedule,
        anchor_at: Option<DateTime<Utc>>,
        #[schema(value_type = Object)]
        params: Value,
        priority: Option<i32>,
        /// `skip`, `run_once` or `catch_up`.
        misfire: String,
        max_catch_up: u32,
        misfire_grace_ms: u64,
        /// `skip`, `queue` or `replace`.
        overlap: String,
        enabled: bool,
        /// `config` or `undeclared`.
        disabled_reason: Option<String>,
        paused: bool,
        /// `code`, `config` or `api`.
        source: String,
        callback_url: Option<String>,
        next_run_at: Option<DateTime<Utc>>,
        last_fired_at: Option<DateTime<Utc>>,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    }

    /// What became of one nominal slot of a job.
    #[derive(ToSchema)]
    pub(crate) struct JobSlot {
        scheduled_for: DateTime<Utc>,
        /// `ran`, `caught_up`, `coalesced` or `skipped`.
        outcome: String,
        run_id: Option<i64>,
        /// `overlap`, `paused` or `misfire`.
        reason: Option<String>,
    }

    /// A queue with its limits and load.
    #[derive(ToSchema)]
    pub(crate) struct QueueInfo {
        name: String,
        concurrency: Option<u32>,
        rate_limit: Option<u32>,
        rate_window_ms: Option<u64>,
        paused: bool,
        queued: u64,
        running: u64,
    }

    /// A node that runs or ran against this database.
    #[derive(ToSchema)]
    pub(crate) struct NodeInfo {
        id: String,
        /// `[scheduler] node_name`, else `<hostname>:<pid>`; not necessarily unique.
        name: String,
        hostname: String,
        pid: u32,
        version: String,
        max_workers: u32,
        /// `running`, `stopped` or `dead`.
        status: String,
        alive: bool,
        paused: bool,
        started_at: DateTime<Utc>,
        heartbeat_at: DateTime<Utc>,
        running: u64,
    }

    /// Misfire and overlap defaults of a task's jobs.
    #[derive(ToSchema)]
    pub(crate) struct JobPolicy {
        misfire: String,
        max_catch_up: u32,
        misfire_grace_ms: u64,
        overlap: String,
    }

    /// A registered task with its effective policies.
    #[derive(ToSchema)]
    pub(crate) struct TaskInfo {
        name: String,
        queue: String,
        priority: i32,
        max_retries: u32,
        retry_delay_ms: u64,
        timeout_ms: u64,
        max_instances: Option<u32>,
        job_policy: JobPolicy,
        /// JSON Schema of its params.
        #[schema(value_type = Object)]
        params_schema: Value,
        location: String,
    }

    /// One task's runs over the last hour.
    #[derive(ToSchema)]
    pub(crate) struct TaskStats {
        task: String,
        finished: u64,
        succeeded: u64,
        failed: u64,
        mean_duration_ms: Option<u64>,
        p95_duration_ms: Option<u64>,
    }

    /// Counts, queue depths, throughput and durations.
    #[derive(ToSchema)]
    pub(crate) struct Stats {
        at: DateTime<Utc>,
        /// Runs of each status, zeros included.
        counts: BTreeMap<String, u64>,
        running: u64,
        queued: u64,
        queues: Vec<QueueInfo>,
        completed_last_minute: u64,
        completed_last_hour: u64,
        per_minute_last_hour: f64,
        completion_rate: Option<f64>,
        failure_rate: Option<f64>,
        tasks: Vec<TaskStats>,
    }

    /// Whether kairos is working.
    #[derive(ToSchema)]
    pub(crate) struct Health {
        healthy: bool,
        database: bool,
        live_workers: u64,
        last_heartbeat: Option<DateTime<Utc>>,
        /// What is wrong, in words (empty when healthy).
        reasons: Vec<String>,
        /// What is worth knowing though healthy (every live node is paused).
        warnings: Vec<String>,
    }

    /// One state change, as the event streams deliver it.
    #[derive(ToSchema)]
    pub(crate) struct Event {
        at: DateTime<Utc>,
        /// `run_queued`, `run_started`, `run_progress`, `run_stage`, `run_log`,
        /// `run_retried`, `run_finished`, `slot_skipped`, `job_paused`, `job_resumed`,
        /// `job_changed`, `node_joined`, `node_left`, `dropped`.
        kind: String,
        run_id: Option<i64>,
        job: Option<String>,
        task: Option<String>,
        tags: Option<BTreeMap<String, String>>,
        node_id: Option<String>,
        #[schema(value_type = Object)]
        data: Value,
    }
}
