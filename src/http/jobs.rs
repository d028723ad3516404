//! `/api/v1/jobs`: list and show jobs, create one for a registered task, change it
//! (`PATCH`), pause, resume, trigger, delete, and the record of its slots. A job's
//! schedule is given as the CLI's flags are: `schedule` (cron, with `timezone` and
//! `dst`), `interval` (`15m`) or `at` (RFC 3339), exactly one of them at creation and
//! at most one in a change, where a new cron `schedule` keeps the job's zone and DST
//! rule unless given and `timezone` or `dst` alone change those of a cron job.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::input::{self, JsonBody, Query};
use super::openapi::schema;
use crate::model::{Job, JobSlot, Run, RunFilter};
use crate::ops::{Admin, JobChanges, NewJob};
use crate::schedule::{CronSchedule, DstPolicy, Schedule, Tz, parse_timezone};
use crate::task::{Misfire, Overlap};

/// `Some(None)` for an explicit `null`, `None` for an absent key.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The schedule and policy fields shared by create and update.
struct Def<'a> {
    schedule: &'a Option<String>,
    timezone: &'a Option<String>,
    dst: &'a Option<String>,
    interval: &'a Option<String>,
    at: &'a Option<DateTime<Utc>>,
    misfire: &'a Option<String>,
    max_catch_up: Option<u32>,
    misfire_grace: &'a Option<String>,
    overlap: &'a Option<String>,
}

impl Def<'_> {
    /// At most one of `schedule`, `interval` and `at`; `timezone` and `dst` not with
    /// `interval` or `at`.
    fn check_kinds(&self) -> Result<(), ApiError> {
        let given = [
            self.schedule.is_some(),
            self.interval.is_some(),
            self.at.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(ApiError::field(
                "schedule",
                "give one of `schedule` (cron), `interval` or `at`, not several",
            ));
        }
        let other = match (self.interval, self.at) {
            (Some(_), _) => "`interval`",
            (_, Some(_)) => "`at`",
            _ => return Ok(()),
        };
        if let Some(field) = self.zone_field() {
            return Err(ApiError::field(
                field,
                format!("`{field}` applies only to a cron `schedule`, not to {other}; remove it"),
            ));
        }
        Ok(())
    }

    /// The first of `timezone` and `dst` that is given, to name in an error.
    fn zone_field(&self) -> Option<&'static str> {
        match (self.timezone, self.dst) {
            (Some(_), _) => Some("timezone"),
            (_, Some(_)) => Some("dst"),
            _ => None,
        }
    }

    fn timezone(&self) -> Result<Option<Tz>, ApiError> {
        self.timezone
            .as_deref()
            .map(|z| parse_timezone(z).map_err(|e| ApiError::field("timezone", e.to_string())))
            .transpose()
    }

    fn dst(&self) -> Result<Option<DstPolicy>, ApiError> {
        self.dst
            .as_deref()
            .map(|d| {
                d.parse::<DstPolicy>()
                    .map_err(|e| ApiError::field("dst", e))
            })
            .transpose()
    }

    /// The schedule of a new job; a cron one in `timezone` (default: the configured
    /// zone).
    fn schedule(&self, admin: &Admin) -> Result<Schedule, ApiError> {
        self.check_kinds()?;
        if let Some(expr) = self.schedule {
            let tz = self.timezone()?.unwrap_or(admin.defaults().timezone);
            let cron = CronSchedule::parse(expr, tz)
                .map_err(|e| ApiError::field("schedule", e.to_string()))?
                .with_dst(self.dst()?.unwrap_or_default());
            return Ok(Schedule::Cron(cron));
        }
        if let Some(field) = self.zone_field() {
            return Err(ApiError::field(
                field,
                format!("`{field}` applies only to a cron `schedule`; give one with it"),
            ));
        }
        if let Some(d) = self.interval {
            return Ok(Schedule::Every(input::duration("interval", d)?));
        }
        (*self.at).map(Schedule::Once).ok_or_else(|| {
            ApiError::field(
                "schedule",
                "give the job a schedule: `schedule` (cron, e.g. \"0 7 * * *\"), `interval` \
                 (e.g. \"15m\") or `at` (RFC 3339)",
            )
        })
    }

    /// The schedule part of a change: a new cron `schedule` keeps the job's zone and
    /// DST policy unless `timezone` or `dst` is given, and those alone change the
    /// zone of a cron job (`Admin::update_job` refuses them on any other).
    fn schedule_changes(&self, mut c: JobChanges) -> Result<JobChanges, ApiError> {
        self.check_kinds()?;
        if let Some(expr) = self.schedule {
            c = c.cron(expr.clone());
        }
        c.timezone = self.timezone()?;
        c.dst = self.dst()?;
        if let Some(d) = self.interval {
            c = c.schedule(Schedule::Every(input::duration("interval", d)?));
        }
        if let Some(at) = self.at {
            c = c.schedule(Schedule::Once(*at));
        }
        Ok(c)
    }

    fn policies(&self) -> Result<JobChanges, ApiError> {
        let mut c = JobChanges::new();
        if let Some(m) = self.misfire {
            c = c.misfire(
                m.parse::<Misfire>()
                    .map_err(|e| ApiError::field("misfire", e))?,
            );
        }
        if let Some(n) = self.max_catch_up {
            c = c.max_catch_up(n);
        }
        if let Some(g) = self.misfire_grace {
            c = c.misfire_grace(input::duration("misfire_grace", g)?);
        }
        if let Some(o) = self.overlap {
            c = c.overlap(
                o.parse::<Overlap>()
                    .map_err(|e| ApiError::field("overlap", e))?,
            );
        }
        Ok(c)
    }
}

/// A job to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateJob {
    /// Unique name.
    name: String,
    /// The registered task it fires.
    task: String,
    /// Cron expression (5 fields, 6 with seconds, or `@daily`...).
    schedule: Option<String>,
    /// IANA zone of the cron schedule (default: the configured one, else UTC).
    timezone: Option<String>,
    /// Daylight-saving rule of the cron schedule: `debian`, `skip` or `both`.
    dst: Option<String>,
    /// Fixed interval instead, e.g. `15m`.
    interval: Option<String>,
    /// Once, at this time, instead.
    #[serde(default, deserialize_with = "input::time")]
    at: Option<DateTime<Utc>>,
    /// Params of every run, a JSON object.
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
    /// Priority of its runs (lower first); default the task's.
    priority: Option<i32>,
    /// Missed slots: `skip`, `run_once` or `catch_up`.
    misfire: Option<String>,
    /// With `catch_up`, how many missed slots run at most.
    max_catch_up: Option<u32>,
    /// A slot found later than this is missed, e.g. `30s`.
    misfire_grace: Option<String>,
    /// At `max_instances`: `skip`, `queue` or `replace`.
    overlap: Option<String>,
    /// POST each finished run as JSON to this URL.
    callback_url: Option<String>,
    /// Create it paused.
    #[serde(default)]
    paused: bool,
}

/// Changes to a job; absent keys stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateJob {
    /// A new cron schedule (restarts the job's slots from now), in the job's zone and
    /// daylight-saving rule unless `timezone` or `dst` is given.
    schedule: Option<String>,
    /// IANA zone of the job's cron schedule (the new one, or alone: its current one).
    timezone: Option<String>,
    /// Daylight-saving rule of the job's cron schedule (the new one, or alone: its
    /// current one).
    dst: Option<String>,
    /// A new fixed interval.
    interval: Option<String>,
    /// Once, at this time.
    #[serde(default, deserialize_with = "input::time")]
    at: Option<DateTime<Utc>>,
    /// New params.
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
    /// New priority; `null`: the task's.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i32>)]
    priority: Option<Option<i32>>,
    /// Misfire policy.
    misfire: Option<String>,
    /// Catch-up bound.
    max_catch_up: Option<u32>,
    /// Misfire grace, e.g. `30s`.
    misfire_grace: Option<String>,
    /// Overlap policy.
    overlap: Option<String>,
    /// Webhook URL; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    callback_url: Option<Option<String>>,
    /// `true` pauses the job, `false` resumes it, as `POST .../pause` and
    /// `.../resume` do (alone, this applies to declared jobs too).
    paused: Option<bool>,
}

/// Every job, by name.
#[derive(Serialize, ToSchema)]
pub(crate) struct JobList {
    #[schema(value_type = Vec<schema::Job>)]
    jobs: Vec<Job>,
}

/// Every job with its schedule, state and next run.
#[utoipa::path(
    get, operation_id = "jobs_list", path = "/api/v1/jobs", tag = "jobs",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Every job", body = JobList))
)]
pub(crate) async fn list(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<JobList>, ApiError> {
    Query::parse(raw.as_deref()).finish(&[])?;
    Ok(Json(JobList {
        jobs: st.admin.jobs().await?,
    }))
}

/// Create a job for a registered task (kept across restarts; never removed by
/// `jobs.toml`).
#[utoipa::path(
    post, operation_id = "jobs_create", path = "/api/v1/jobs", tag = "jobs", request_body = CreateJob,
    security((), ("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = schema::Job),
        (status = 400, description = "Invalid schedule, task, params or policy", body = ErrorBody),
        (status = 409, description = "A job of that name exists", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<CreateJob>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let def = Def {
        schedule: &req.schedule,
        timezone: &req.timezone,
        dst: &req.dst,
        interval: &req.interval,
        at: &req.at,
        misfire: &req.misfire,
        max_catch_up: req.max_catch_up,
        misfire_grace: &req.misfire_grace,
        overlap: &req.overlap,
    };
    let schedule = def.schedule(&st.admin)?;
    let mut new = NewJob::new(req.name.clone(), req.task.clone(), schedule)
        .paused(req.paused)
        .policies(def.policies()?);
    if let Some(p) = &req.params {
        new = new.params(p.clone());
    }
    if let Some(p) = req.priority {
        new = new.priority(p);
    }
    if let Some(u) = &req.callback_url {
        new = new.callback_url(u.clone());
    }
    Ok((StatusCode::CREATED, Json(st.admin.create_job(new).await?)))
}

/// A job and its recent runs.
#[derive(Serialize, ToSchema)]
pub(crate) struct JobDetail {
    #[serde(flatten)]
    #[schema(inline, value_type = schema::Job)]
    job: Job,
    /// Its ten most recent runs, newest first.
    #[schema(value_type = Vec<schema::Run>)]
    recent_runs: Vec<Run>,
}

/// One job, with its recent runs.
#[utoipa::path(
    get, operation_id = "jobs_show", path = "/api/v1/jobs/{name}", tag = "jobs",
    params(("name" = String, Path, description = "Job name")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The job", body = JobDetail),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub(crate) async fn show(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    let job = st.admin.job(&name).await?;
    let recent_runs = st
        .admin
        .runs(&RunFilter::new().job(name).page(1, 10))
        .await?
        .runs;
    Ok(Json(JobDetail { job, recent_runs }))
}

/// Change a job created through the API or CLI (a new schedule restarts from now).
#[utoipa::path(
    patch, operation_id = "jobs_update", path = "/api/v1/jobs/{name}", tag = "jobs", request_body = UpdateJob,
    params(("name" = String, Path, description = "Job name")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The job after the change", body = schema::Job),
        (status = 400, description = "Invalid change, or nothing to change", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is declared in code or jobs.toml", body = ErrorBody),
    )
)]
pub(crate) async fn update(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<UpdateJob>,
) -> Result<Json<Job>, ApiError> {
    let def = Def {
        schedule: &req.schedule,
        timezone: &req.timezone,
        dst: &req.dst,
        interval: &req.interval,
        at: &req.at,
        misfire: &req.misfire,
        max_catch_up: req.max_catch_up,
        misfire_grace: &req.misfire_grace,
        overlap: &req.overlap,
    };
    let mut c = def.schedule_changes(def.policies()?)?;
    if let Some(p) = req.params {
        c = c.params(p);
    }
    c.priority = req.priority;
    c.callback_url = req.callback_url;
    let job = match (c == JobChanges::new(), req.paused) {
        (true, None) => {
            return Err(ApiError::field(
                "body",
                "nothing to change: give schedule, timezone, dst, interval, at, params, \
                 priority, a policy, callback_url or paused",
            ));
        }
        (true, Some(_)) => None,
        (false, _) => Some(st.admin.update_job(&name, c).await?),
    };
    Ok(Json(match req.paused {
        Some(true) => st.admin.pause_job(&name).await?,
        Some(false) => st.admin.resume_job(&name).await?,
        None => job.expect("a change was made"),
    }))
}

/// What a delete did.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeletedJob {
    name: String,
    deleted: bool,
    /// Its unfinished runs, cancelled.
    runs_cancelled: u64,
    /// Its finished runs, deleted (none with `keep_history`).
    runs_deleted: u64,
}

/// Delete a job created at run time (or one no longer declared).
#[utoipa::path(
    delete, operation_id = "jobs_delete", path = "/api/v1/jobs/{name}", tag = "jobs",
    params(
        ("name" = String, Path, description = "Job name"),
        ("keep_history" = Option<bool>, Query, description = "Keep its finished runs and slot records"),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Deleted", body = DeletedJob),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is declared in code or jobs.toml", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DeletedJob>, ApiError> {
    let mut q = Query::parse(raw.as_deref());
    let keep: bool = q.parsed("keep_history")?.unwrap_or(false);
    q.finish(&["keep_history"])?;
    let (cancelled, deleted) = st.admin.delete_job(&name, keep).await?;
    Ok(Json(DeletedJob {
        name,
        deleted: true,
        runs_cancelled: cancelled,
        runs_deleted: deleted,
    }))
}

/// Stop firing a job until resumed (runs it already queued still run).
#[utoipa::path(
    post, operation_id = "jobs_pause", path = "/api/v1/jobs/{name}/pause", tag = "jobs",
    params(("name" = String, Path, description = "Job name")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The paused job", body = schema::Job),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub(crate) async fn pause(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(st.admin.pause_job(&name).await?))
}

/// Resume a paused job (slots missed meanwhile go through its misfire policy).
#[utoipa::path(
    post, operation_id = "jobs_resume", path = "/api/v1/jobs/{name}/resume", tag = "jobs",
    params(("name" = String, Path, description = "Job name")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The resumed job (a disabled one still fires nothing)", body = schema::Job),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub(crate) async fn resume(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(st.admin.resume_job(&name).await?))
}

/// Run a job now, outside its schedule (the run's origin is `manual`).
#[utoipa::path(
    post, operation_id = "jobs_trigger", path = "/api/v1/jobs/{name}/trigger", tag = "jobs",
    params(("name" = String, Path, description = "Job name")),
    security((), ("bearer" = [])),
    responses(
        (status = 201, description = "The run enqueued", body = schema::Run),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "Already triggered at this instant", body = ErrorBody),
    )
)]
pub(crate) async fn trigger(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Run>), ApiError> {
    let id = st.admin.trigger_job(&name).await?;
    Ok((StatusCode::CREATED, Json(st.admin.run(id).await?)))
}

/// A job's slots.
#[derive(Serialize, ToSchema)]
pub(crate) struct Slots {
    /// Oldest first.
    #[schema(value_type = Vec<schema::JobSlot>)]
    slots: Vec<JobSlot>,
}

/// What became of each slot: ran, caught_up, coalesced or skipped (with why).
#[utoipa::path(
    get, operation_id = "jobs_slots", path = "/api/v1/jobs/{name}/slots", tag = "jobs",
    params(
        ("name" = String, Path, description = "Job name"),
        ("since" = Option<String>, Query, description = "From this age (default 1d) or RFC 3339 time on"),
        ("limit" = Option<u32>, Query, description = "At most this many, the most recent (default 1000, at most 100000)"),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The slots", body = Slots),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub(crate) async fn slots(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Slots>, ApiError> {
    let mut q = Query::parse(raw.as_deref());
    let since = q.one("since")?.unwrap_or_else(|| "1d".into());
    let since = input::since("since", &since, st.admin.now())?;
    let limit: u32 = q.parsed("limit")?.unwrap_or(1000);
    if !(1..=100_000).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1 to 100000"));
    }
    q.finish(&["since", "limit"])?;
    Ok(Json(Slots {
        slots: st.admin.job_slots(&name, since, limit as usize).await?,
    }))
}
