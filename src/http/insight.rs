//! Numbers for operators: `GET /api/v1/stats` (counts, queue depths, throughput,
//! durations per task, optionally for one tag), `GET /health` (200 or 503 with the
//! reasons) and `GET /metrics` (Prometheus text exposition).
//!
//! # Metrics
//! Every value is read from the database at scrape time, so any number of `kairos
//! serve` processes (or embedding applications) report the same cluster-wide numbers
//! and nothing is lost when a node restarts. The histograms therefore describe a
//! window (runs that finished, and slots fired, in the last hour) rather than
//! counting since the process started: use them as they are (`histogram_quantile`
//! over the `_bucket` series without `rate`), not through `rate()`.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::input::{self, Query};
use super::openapi::schema;
use crate::model::{Health, RunStatus, Stats};
use crate::store::StatsScope;

/// Counts by status, queue depths, throughput per minute and hour, completion rate and
/// durations per task over the last hour.
#[utoipa::path(
    get, operation_id = "insight_stats", path = "/api/v1/stats", tag = "insight",
    params(
        ("task" = Option<String>, Query, description = "Only runs of this task"),
        ("tag" = Option<String>, Query, description = "Only runs with this tag, key=value; repeat to require several"),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Statistics", body = schema::Stats),
        (status = 400, description = "Invalid or unknown filter", body = ErrorBody),
    )
)]
pub(crate) async fn stats(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Stats>, ApiError> {
    let mut q = Query::parse(raw.as_deref());
    let task = q.one("task")?;
    let tags = q
        .all_raw("tag")
        .iter()
        .map(|t| input::tag("tag", t))
        .collect::<Result<Vec<_>, _>>()?;
    q.finish(&["task", "tag"])?;
    Ok(Json(st.admin.stats(task.as_deref(), &tags).await?))
}

/// Healthy (200) when the database answers and a running node's heartbeat is fresh;
/// else 503 with the reasons. Always open, even with `--protect-reads`.
#[utoipa::path(
    get, operation_id = "insight_health", path = "/health", tag = "insight",
    params(("max_age" = Option<String>, Query, description = "A heartbeat older than this is stale; more than zero. By default each node is judged by its own heartbeat_timeout (10s unless configured), as `nodes list` judges it")),
    responses(
        (status = 200, description = "Healthy", body = schema::Health),
        (status = 503, description = "Unhealthy: see `reasons`", body = schema::Health),
        (status = 400, description = "Invalid max_age", body = ErrorBody),
    )
)]
pub(crate) async fn health(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<(StatusCode, Json<Health>), ApiError> {
    let mut q = Query::parse(raw.as_deref());
    let max_age = match q.one("max_age")? {
        Some(s) => {
            let d = input::duration("max_age", &s)?;
            if let Some(problem) = crate::ops::max_age_problem(d) {
                return Err(ApiError::field("max_age", problem));
            }
            Some(d)
        }
        None => None,
    };
    q.finish(&["max_age"])?;
    let h = st.admin.health(max_age).await;
    let status = if h.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(h)))
}

/// Upper bounds (seconds) of the run duration histogram.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Upper bounds (seconds) of the cron firing lateness histogram.
const LATENESS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0,
];
/// Most rows read for one histogram.
const SAMPLE: i64 = 50_000;

/// Prometheus metrics: runs by task and status, run durations, queue depths and
/// limits, cron firing lateness, jobs by state, node heartbeats.
#[utoipa::path(
    get, operation_id = "insight_metrics", path = "/metrics", tag = "insight",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain"),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    )
)]
pub(crate) async fn metrics(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    Query::parse(raw.as_deref()).finish(&[])?;
    let admin = &st.admin;
    let store = admin.store();
    let now = admin.now();
    let hour_ago = now - chrono::Duration::hours(1);
    let err = |e: crate::StoreError| ApiError::from(crate::Error::from(e));

    let mut m = Metrics::default();

    m.help(
        "kairos_runs",
        "gauge",
        "Runs in the database by task and status.",
    );
    for ((task, status), n) in store.counts_by_task().await.map_err(err)? {
        m.sample(
            "kairos_runs",
            &[("task", &task), ("status", status.as_str())],
            n as f64,
        );
    }

    let finished = store
        .finished_since(hour_ago, &StatsScope::default(), SAMPLE)
        .await
        .map_err(err)?;
    m.help(
        "kairos_runs_finished_last_hour",
        "gauge",
        "Runs that finished in the last hour by task and final status.",
    );
    let mut by_outcome: BTreeMap<(&str, RunStatus), u64> = BTreeMap::new();
    let mut durations: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for f in &finished {
        *by_outcome.entry((&f.task, f.status)).or_default() += 1;
        if let Some(d) = f.duration_ms
            && !matches!(f.status, RunStatus::Cancelled | RunStatus::Expired)
        {
            durations
                .entry(&f.task)
                .or_default()
                .push(d as f64 / 1000.0);
        }
    }
    for ((task, status), n) in &by_outcome {
        m.sample(
            "kairos_runs_finished_last_hour",
            &[("task", task), ("status", status.as_str())],
            *n as f64,
        );
    }
    m.help(
        "kairos_run_duration_seconds",
        "histogram",
        "Durations of the last attempts of runs that finished in the last hour, by task.",
    );
    for (task, values) in &durations {
        m.histogram(
            "kairos_run_duration_seconds",
            ("task", task),
            DURATION_BUCKETS,
            values,
        );
    }

    let lateness = store.firing_lateness(hour_ago, SAMPLE).await.map_err(err)?;
    let mut late: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (task, ms) in &lateness {
        late.entry(task).or_default().push(*ms as f64 / 1000.0);
    }
    m.help(
        "kairos_cron_firing_lateness_seconds",
        "histogram",
        "How long after their nominal slot jobs fired the runs of slots in the last hour, by task.",
    );
    for (task, values) in &late {
        m.histogram(
            "kairos_cron_firing_lateness_seconds",
            ("task", task),
            LATENESS_BUCKETS,
            values,
        );
    }

    let queues = admin.queues().await?;
    m.help(
        "kairos_queue_queued",
        "gauge",
        "Runs waiting in each queue (due or not).",
    );
    for q in &queues {
        m.sample(
            "kairos_queue_queued",
            &[("queue", &q.name)],
            q.queued as f64,
        );
    }
    m.help(
        "kairos_queue_running",
        "gauge",
        "Runs running from each queue.",
    );
    for q in &queues {
        m.sample(
            "kairos_queue_running",
            &[("queue", &q.name)],
            q.running as f64,
        );
    }
    m.help(
        "kairos_queue_paused",
        "gauge",
        "1 when the queue is paused.",
    );
    for q in &queues {
        m.sample(
            "kairos_queue_paused",
            &[("queue", &q.name)],
            f64::from(u8::from(q.paused)),
        );
    }
    m.help(
        "kairos_queue_concurrency_limit",
        "gauge",
        "Runs of the queue allowed at once across all nodes (queues with a limit).",
    );
    for q in &queues {
        if let Some(c) = q.concurrency {
            m.sample(
                "kairos_queue_concurrency_limit",
                &[("queue", &q.name)],
                f64::from(c),
            );
        }
    }

    let jobs = admin.jobs().await?;
    m.help(
        "kairos_jobs",
        "gauge",
        "Jobs by state: active, paused or disabled.",
    );
    for state in ["active", "paused", "disabled"] {
        let n = jobs.iter().filter(|j| j.state() == state).count();
        m.sample("kairos_jobs", &[("state", state)], n as f64);
    }

    let nodes = admin.nodes().await?;
    m.help(
        "kairos_node_heartbeat_timestamp_seconds",
        "gauge",
        "Unix time of each node's last heartbeat.",
    );
    for n in &nodes {
        m.sample(
            "kairos_node_heartbeat_timestamp_seconds",
            &[
                ("node", &n.id),
                ("name", &n.name),
                ("hostname", &n.hostname),
                ("status", &n.status),
            ],
            n.heartbeat_at.timestamp_millis() as f64 / 1000.0,
        );
    }
    m.help(
        "kairos_node_alive",
        "gauge",
        "1 when the node runs and beat recently.",
    );
    for n in &nodes {
        m.sample(
            "kairos_node_alive",
            &[("node", &n.id)],
            f64::from(u8::from(n.alive)),
        );
    }
    m.help(
        "kairos_node_running_runs",
        "gauge",
        "Runs each node is running.",
    );
    for n in &nodes {
        m.sample(
            "kairos_node_running_runs",
            &[("node", &n.id)],
            n.running as f64,
        );
    }
    m.help(
        "kairos_node_max_workers",
        "gauge",
        "Worker slots of each node.",
    );
    for n in &nodes {
        m.sample(
            "kairos_node_max_workers",
            &[("node", &n.id)],
            f64::from(n.max_workers),
        );
    }

    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.out,
    )
        .into_response())
}

/// Prometheus text being written.
#[derive(Default)]
struct Metrics {
    out: String,
}

impl Metrics {
    fn help(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = writeln!(self.out, "{name}{} {}", labels_text(labels), number(value));
    }

    /// A histogram's cumulative buckets, `+Inf`, sum and count.
    fn histogram(&mut self, name: &str, label: (&str, &str), bounds: &[f64], values: &[f64]) {
        for b in bounds {
            let n = values.iter().filter(|v| **v <= *b).count();
            let le = number(*b);
            self.sample(&format!("{name}_bucket"), &[label, ("le", &le)], n as f64);
        }
        self.sample(
            &format!("{name}_bucket"),
            &[label, ("le", "+Inf")],
            values.len() as f64,
        );
        self.sample(&format!("{name}_sum"), &[label], values.iter().sum());
        self.sample(&format!("{name}_count"), &[label], values.len() as f64);
    }
}

fn labels_text(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// A label value as the exposition format quotes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels_text(&[("task", "a\"b\\c\nd")]),
            "{task=\"a\\\"b\\\\c\\nd\"}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut m = Metrics::default();
        m.histogram("h", ("task", "t"), &[0.1, 1.0], &[0.05, 0.5, 2.0]);
        assert!(m.out.contains("h_bucket{task=\"t\",le=\"0.1\"} 1\n"));
        assert!(m.out.contains("h_bucket{task=\"t\",le=\"1\"} 2\n"));
        assert!(m.out.contains("h_bucket{task=\"t\",le=\"+Inf\"} 3\n"));
        assert!(m.out.contains("h_count{task=\"t\"} 3\n"));
    }
}
