//! `kairos runs watch [ID | --task T | --tag k=v]`: live progress bars (stage, attempt,
//! elapsed time) of running runs, fed by the event log other processes write while
//! this one watches, and refreshed from the runs table every couple of seconds so
//! nothing is missed while the nodes notice the watcher. With `--json`, the events are
//! printed as JSON lines instead.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::output::{CliError, Out, rfc3339};
use crate::events::{Event, EventFilter, EventKind};
use crate::model::{Run, RunFilter, RunStatus};
use crate::ops::Admin;

/// How often the event log is read.
const POLL: Duration = Duration::from_millis(250);
/// How often the subscription is renewed and running runs re-read.
const REFRESH: Duration = Duration::from_secs(2);

/// What to watch.
pub(super) struct Watch {
    pub(super) run: Option<i64>,
    pub(super) filter: EventFilter,
}

pub(super) async fn watch(w: Watch, admin: &Admin, out: &mut Out<'_>) -> Result<(), CliError> {
    let me = format!("cli-watch-{}", uuid::Uuid::new_v4().simple());
    let store = admin.store();
    let result = watch_inner(&w, admin, &me, out).await;
    let _ = store.subscriber_leave(&me).await;
    result
}

async fn watch_inner(
    w: &Watch,
    admin: &Admin,
    me: &str,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let store = admin.store();
    if let Some(id) = w.run {
        let run = admin.run(id).await?;
        if run.status.is_finished() {
            return out.print_line(&run, || finished_line(&run));
        }
    }
    let mut after = store.last_event_id().await.map_err(crate::Error::from)?;
    let bars = Bars::new(out.is_json());
    let mut last_refresh: Option<tokio::time::Instant> = None;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        if last_refresh.is_none_or(|t| t.elapsed() >= REFRESH) {
            last_refresh = Some(tokio::time::Instant::now());
            store
                .subscriber_beat(me, chrono::Utc::now())
                .await
                .map_err(crate::Error::from)?;
            for run in running(admin, w).await? {
                bars.show(&run);
            }
            if let Some(id) = w.run {
                let run = admin.run(id).await?;
                if run.status.is_finished() {
                    bars.finish(&run);
                    bars.clear();
                    return out.print_line(&run, || finished_line(&run));
                }
            }
        }
        for (id, e) in store
            .events_after(after, None, 1000)
            .await
            .map_err(crate::Error::from)?
        {
            after = id;
            if !w.filter.matches(&e) {
                continue;
            }
            if out.is_json() {
                out.print_line(&e, String::new)?;
            } else {
                bars.apply(&e, admin).await;
            }
            if e.kind == EventKind::RunFinished && w.run.is_some() && e.run_id == w.run {
                let run = admin.run(e.run_id.unwrap_or_default()).await?;
                bars.finish(&run);
                bars.clear();
                if !out.is_json() {
                    out.print_line(&run, || finished_line(&run))?;
                }
                return Ok(());
            }
        }
        tokio::select! {
            _ = &mut interrupted => {
                bars.clear();
                return Ok(());
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// The running runs the watch covers.
async fn running(admin: &Admin, w: &Watch) -> Result<Vec<Run>, CliError> {
    if let Some(id) = w.run {
        let r = admin.run(id).await?;
        return Ok(if r.status == RunStatus::Running {
            vec![r]
        } else {
            Vec::new()
        });
    }
    let mut filter = RunFilter::new().status(RunStatus::Running).page(1, 200);
    filter.task = w.filter.task.clone();
    filter.job = w.filter.job.clone();
    if let Some((k, v)) = &w.filter.tag {
        filter = filter.tag(k.clone(), v.clone());
    }
    Ok(admin.runs(&filter).await?.runs)
}

fn finished_line(r: &Run) -> String {
    format!(
        "run {} of `{}` {} at {} after {} attempt(s){}",
        r.id,
        r.task,
        r.status,
        r.finished_at.map_or("-".into(), rfc3339),
        r.attempt,
        r.error
            .as_deref()
            .map_or(String::new(), |e| format!(": {e}"))
    )
}

/// One progress bar per running run.
struct Bars {
    multi: MultiProgress,
    bars: std::sync::Mutex<BTreeMap<i64, ProgressBar>>,
}

impl Bars {
    fn new(hidden: bool) -> Self {
        let multi = MultiProgress::new();
        if hidden {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        Bars {
            multi,
            bars: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    fn bar(&self, id: i64, task: &str) -> ProgressBar {
        let mut bars = self.bars.lock().expect("bars");
        bars.entry(id)
            .or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new(100));
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>28} [{bar:30}] {pos:>3}% {elapsed:>5} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b.set_prefix(format!("run {id} {task}"));
                b.enable_steady_tick(Duration::from_millis(500));
                b
            })
            .clone()
    }

    /// Shows a run as the runs table has it.
    fn show(&self, r: &Run) {
        let b = self.bar(r.id, &r.task);
        if let Some(p) = r.progress {
            b.set_position(u64::from(p));
        }
        b.set_message(describe(
            r.attempt,
            r.stage.as_deref(),
            r.progress_message.as_deref(),
        ));
    }

    async fn apply(&self, e: &Event, admin: &Admin) {
        let Some(id) = e.run_id else {
            if matches!(e.kind, EventKind::JobPaused | EventKind::JobResumed) {
                let _ = self.multi.println(format!(
                    "{} job {} {}",
                    rfc3339(e.at),
                    e.job.as_deref().unwrap_or("?"),
                    e.kind
                ));
            }
            return;
        };
        let task = e.task.clone().unwrap_or_default();
        match e.kind {
            EventKind::RunStarted | EventKind::RunProgress | EventKind::RunStage => {
                if let Ok(r) = admin.run(id).await {
                    self.show(&r);
                } else {
                    self.bar(id, &task);
                }
            }
            EventKind::RunLog => {
                let _ = self.multi.println(format!(
                    "run {id}: [{}] {}",
                    e.data["level"].as_str().unwrap_or("info"),
                    e.data["message"].as_str().unwrap_or("")
                ));
            }
            EventKind::RunRetried => {
                let _ = self.multi.println(format!(
                    "run {id}: attempt {} failed, retry at {}: {}",
                    e.data["attempt"],
                    e.data["retry_at"].as_str().unwrap_or("?"),
                    e.data["error"].as_str().unwrap_or("")
                ));
                self.remove(id);
            }
            EventKind::RunFinished => {
                if let Ok(r) = admin.run(id).await {
                    self.finish(&r);
                }
            }
            _ => {}
        }
    }

    fn finish(&self, r: &Run) {
        let b = self.bars.lock().expect("bars").remove(&r.id);
        if let Some(b) = b {
            if r.status == RunStatus::Succeeded {
                b.set_position(100);
            }
            b.finish_with_message(format!("{}", r.status));
        }
    }

    fn remove(&self, id: i64) {
        if let Some(b) = self.bars.lock().expect("bars").remove(&id) {
            b.finish_and_clear();
        }
    }

    fn clear(&self) {
        let _ = self.multi.clear();
    }
}

/// `attempt 2 · searching_web · district 7 of 19`.
fn describe(attempt: u32, stage: Option<&str>, message: Option<&str>) -> String {
    let mut parts = vec![format!("attempt {attempt}")];
    parts.extend(stage.map(str::to_string));
    parts.extend(message.map(str::to_string));
    parts.join(" · ")
}
