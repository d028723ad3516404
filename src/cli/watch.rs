//! `kairos runs watch [ID | --task T | --tag k=v]`: live progress bars (stage, attempt,
//! elapsed time) of running runs, fed by the event log other processes write while
//! this one watches, and refreshed from the runs table every couple of seconds so
//! nothing is missed while the nodes notice the watcher. With `--json`, the events are
//! printed as JSON lines instead. When stdout is not a terminal (a file, a pipe), bars
//! would show nothing there: each change is printed as a plain line instead.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::output::{CliError, Out, rfc3339};
use crate::events::{Event, EventFilter, EventKind};
use crate::model::{Run, RunFilter, RunStatus};
use crate::ops::Admin;

/// How often the event log is read.
const POLL: Duration = Duration::from_millis(250);
/// How often the subscription is renewed and running runs re-read.
const REFRESH: Duration = Duration::from_secs(2);
/// How often a database out of reach is tried again.
const RETRY: Duration = Duration::from_secs(1);

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
    // A job that does not exist is an error, as an unknown task is (a typo would
    // otherwise look like a watch that ended); one deleted while watched ends the watch.
    if let Some(job) = &w.filter.job {
        admin.job(job).await?;
    }
    let mut state = State {
        after: store.last_event_id().await.map_err(crate::Error::from)?,
        view: if out.is_json() {
            View::Json
        } else if std::io::stdout().is_terminal() {
            View::Bars(Bars::new())
        } else {
            View::Lines(Lines::default())
        },
        last_refresh: None,
        order: crate::events::Reorder::default(),
        heard: false,
        ended_early: false,
    };
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    // A watch outlives a database restart or a dropped connection: it says so once,
    // retries every second, and goes on from the last event it read.
    let mut out_of_reach = false;
    loop {
        match state.step(w, admin, me, out).await {
            Ok(Step::Done) => return Ok(()),
            Ok(Step::Watching) => {
                if std::mem::take(&mut out_of_reach) {
                    eprintln!("kairos: the database answers again; watching on");
                }
            }
            // Only a database out of reach: a statement that fails on a working one
            // would fail again.
            Err(e) if e.code() == "database_unavailable" => {
                if !std::mem::replace(&mut out_of_reach, true) {
                    eprintln!(
                        "kairos: {e}; retrying every {}s (Ctrl-C stops)",
                        RETRY.as_secs()
                    );
                }
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = &mut interrupted => {
                state.view.end();
                return Ok(());
            }
            _ = tokio::time::sleep(if out_of_reach { RETRY } else { POLL }) => {}
        }
    }
}

/// Whether the watch goes on after a step.
enum Step {
    Watching,
    /// The watched run finished and its outcome was shown.
    Done,
}

/// What the watch carries from one step to the next.
struct State {
    /// The last event read from the log.
    after: i64,
    view: View,
    last_refresh: Option<tokio::time::Instant>,
    /// Events in the order they happened, not the order nodes wrote them.
    order: crate::events::Reorder,
    /// Whether an event of the watched run was shown: its node writes them for this
    /// watch, so its `run_finished` event comes too, after its last reports.
    heard: bool,
    /// Whether a refresh found the watched run finished before its `run_finished`
    /// event was read.
    ended_early: bool,
}

impl State {
    /// Renews the subscription and re-reads the running runs when due, then shows the
    /// events written since the last step.
    async fn step(
        &mut self,
        w: &Watch,
        admin: &Admin,
        me: &str,
        out: &mut Out<'_>,
    ) -> Result<Step, CliError> {
        let store = admin.store();
        if self.last_refresh.is_none_or(|t| t.elapsed() >= REFRESH) {
            store
                .subscriber_beat(me, chrono::Utc::now())
                .await
                .map_err(crate::Error::from)?;
            let runs = match running(admin, w).await {
                Ok(runs) => runs,
                // The watched job was deleted meanwhile: nothing more will happen.
                Err(e) if e.code() == "not_found" && w.filter.job.is_some() => {
                    let job = w.filter.job.as_deref().unwrap_or_default();
                    if !matches!(self.view, View::Json) {
                        out.print_line(&(), || format!("job `{job}` was deleted; the watch ends"))?;
                    }
                    return Ok(Step::Done);
                }
                Err(e) => return Err(e),
            };
            self.view.refresh(&runs, admin, out).await?;
            if let Some(id) = w.run {
                let run = admin.run(id).await?;
                // The table can show the end before the run's last progress, stage and
                // log events are read (a node writes them in batches, and they are held
                // a moment to come in order): a run heard of through events ends with
                // its `run_finished` event, or at the next refresh should that not come.
                if run.status.is_finished()
                    && (!self.heard || std::mem::replace(&mut self.ended_early, true))
                {
                    self.view.finish(&run);
                    if !self.view.printed_outcome(id) {
                        out.print_line(&run, || finished_line(&run))?;
                    }
                    return Ok(Step::Done);
                }
            }
            // Only once all of it worked: after an outage the next step refreshes.
            self.last_refresh = Some(tokio::time::Instant::now());
        }
        let read = store
            .events_after(self.after, None, 1000)
            .await
            .map_err(crate::Error::from)?;
        self.after = read.last().map_or(self.after, |(id, _)| *id);
        self.order.push(read);
        for e in self.order.release() {
            if !w.filter.matches(&e) {
                continue;
            }
            self.heard |= w.run.is_some() && e.run_id == w.run;
            self.view.apply(&e, admin, out).await?;
            if e.kind == EventKind::RunFinished && w.run.is_some() && e.run_id == w.run {
                let run = admin.run(e.run_id.unwrap_or_default()).await?;
                self.view.finish(&run);
                // JSON printed the event; plain lines, the outcome.
                if let View::Bars(_) = self.view {
                    out.print_line(&run, || finished_line(&run))?;
                }
                return Ok(Step::Done);
            }
        }
        Ok(Step::Watching)
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

/// How the watch shows what happens.
enum View {
    /// `--json`: every event as a JSON line.
    Json,
    /// A terminal: live progress bars.
    Bars(Bars),
    /// Anything else: one plain line per change, printed as it comes.
    Lines(Lines),
}

impl View {
    /// Shows the running runs as the runs table has them.
    async fn refresh(
        &mut self,
        runs: &[Run],
        admin: &Admin,
        out: &mut Out<'_>,
    ) -> Result<(), CliError> {
        match self {
            View::Json => Ok(()),
            View::Bars(b) => {
                for r in runs {
                    b.show(r);
                }
                Ok(())
            }
            View::Lines(l) => l.refresh(runs, admin, out).await,
        }
    }

    /// Whether the outcome of run `id` was printed already.
    fn printed_outcome(&self, id: i64) -> bool {
        matches!(self, View::Lines(l) if l.outcomes.contains(&id))
    }

    async fn apply(&mut self, e: &Event, admin: &Admin, out: &mut Out<'_>) -> Result<(), CliError> {
        match self {
            View::Json => out.print_line(e, String::new),
            View::Bars(b) => {
                b.apply(e, admin).await;
                Ok(())
            }
            View::Lines(l) => l.apply(e, admin, out).await,
        }
    }

    /// The watched run finished: the watch ends.
    fn finish(&mut self, r: &Run) {
        if let View::Bars(b) = self {
            b.finish(r);
        }
        self.end();
    }

    /// The watch ends: bars are taken off the terminal.
    fn end(&mut self) {
        if let View::Bars(b) = self {
            b.clear();
        }
    }
}

/// Plain lines for output that is not a terminal: a run's state each time it changes,
/// its log lines, retries and outcome, each line flushed at once so that a file or a
/// program reading the pipe gets it as it happens.
#[derive(Default)]
struct Lines {
    /// The state last printed of each running run: the refresh from the runs table
    /// prints a run only when it changed since.
    printed: BTreeMap<i64, RunState>,
    /// Runs whose outcome was printed, from their event or from the runs table
    /// (whichever came first: the other is not printed again).
    outcomes: BTreeSet<i64>,
    /// Runs heard of through events: those tell every change in order, so the
    /// refresh, which may read the table ahead of the events not yet read, leaves
    /// them alone.
    heard: BTreeSet<i64>,
    /// When the refresh last printed a run's state from the runs table: its progress
    /// and stage events from before then, read late (a node writes its events in
    /// batches, and they are held a moment to come in order), are older than what is
    /// shown and would make the progress go backwards.
    read_at: BTreeMap<i64, chrono::DateTime<chrono::Utc>>,
    /// Runs heard of through events that the runs table shows finished before their
    /// last events (final progress, log lines, the outcome) were read: the outcome
    /// waits for those, and is printed from the table only if they have not come by
    /// the next refresh.
    ended_early: BTreeSet<i64>,
}

/// What the line of a running run shows.
#[derive(Debug, Clone, PartialEq)]
struct RunState {
    task: String,
    attempt: u32,
    percent: Option<u8>,
    stage: Option<String>,
    message: Option<String>,
}

impl RunState {
    fn of(r: &Run) -> Self {
        RunState {
            task: r.task.clone(),
            attempt: r.attempt,
            percent: r.progress,
            stage: r.stage.clone(),
            message: r.progress_message.clone(),
        }
    }

    /// `run 42 import_catalog: 47% attempt 1 · downloading · district 9 of 19`.
    fn line(&self, id: i64) -> String {
        let percent = self.percent.map_or(String::new(), |p| format!("{p}% "));
        format!(
            "run {id} {}: {percent}{}",
            self.task,
            describe(self.attempt, self.stage.as_deref(), self.message.as_deref())
        )
    }
}

impl Lines {
    /// Prints the running runs that changed, and the outcome of those no longer
    /// running: a run that ends before the nodes notice the watcher has no event.
    async fn refresh(
        &mut self,
        runs: &[Run],
        admin: &Admin,
        out: &mut Out<'_>,
    ) -> Result<(), CliError> {
        let now = chrono::Utc::now();
        for r in runs {
            if !self.heard.contains(&r.id) {
                self.read_at.insert(r.id, now);
                self.print_state(r.id, RunState::of(r), out)?;
            }
        }
        let gone: Vec<i64> = self
            .printed
            .keys()
            .filter(|id| !runs.iter().any(|r| r.id == **id))
            .copied()
            .collect();
        // Those whose events had their chance since the last refresh.
        let overdue: Vec<i64> = std::mem::take(&mut self.ended_early)
            .into_iter()
            .filter(|id| !self.outcomes.contains(id))
            .collect();
        for id in gone {
            if self.heard.contains(&id) && !overdue.contains(&id) {
                self.ended_early.insert(id);
                continue;
            }
            self.printed.remove(&id);
            if let Ok(r) = admin.run(id).await
                && r.status.is_finished()
            {
                self.print_outcome(&r, out)?;
            }
        }
        for id in overdue {
            if let Ok(r) = admin.run(id).await
                && r.status.is_finished()
            {
                self.print_outcome(&r, out)?;
            }
        }
        Ok(())
    }

    /// Prints a run's outcome, once.
    fn print_outcome(&mut self, r: &Run, out: &mut Out<'_>) -> Result<(), CliError> {
        self.printed.remove(&r.id);
        self.read_at.remove(&r.id);
        if !self.outcomes.insert(r.id) {
            return Ok(());
        }
        out.print_line(&(), || finished_line(r))
    }

    /// Prints a run's state unless it is the one printed last.
    fn print_state(&mut self, id: i64, s: RunState, out: &mut Out<'_>) -> Result<(), CliError> {
        if self.printed.get(&id) == Some(&s) {
            return Ok(());
        }
        let line = s.line(id);
        self.printed.insert(id, s);
        out.print_line(&(), || line)
    }

    async fn apply(&mut self, e: &Event, admin: &Admin, out: &mut Out<'_>) -> Result<(), CliError> {
        let Some(id) = e.run_id else {
            if matches!(e.kind, EventKind::JobPaused | EventKind::JobResumed) {
                let line = format!(
                    "{} job {} {}",
                    rfc3339(e.at),
                    e.job.as_deref().unwrap_or("?"),
                    e.kind
                );
                out.print_line(&(), || line)?;
            }
            return Ok(());
        };
        let task = e.task.clone().unwrap_or_default();
        let attempt = e.data["attempt"]
            .as_u64()
            .and_then(|a| u32::try_from(a).ok());
        self.heard.insert(id);
        match e.kind {
            EventKind::RunStarted => {
                let attempt = attempt.unwrap_or(1);
                // Already shown running by the refresh, which read the runs table
                // before this event was read from the log.
                if self.printed.get(&id).is_some_and(|s| s.attempt == attempt) {
                    return Ok(());
                }
                let s = RunState {
                    task: task.clone(),
                    attempt,
                    percent: None,
                    stage: None,
                    message: None,
                };
                let line = format!("run {id} {task}: started, attempt {}", s.attempt);
                self.printed.insert(id, s);
                // Retried by hand after it finished: its next outcome is new.
                self.outcomes.remove(&id);
                out.print_line(&(), || line)
            }
            EventKind::RunProgress | EventKind::RunStage
                if self.read_at.get(&id).is_some_and(|t| e.at < *t) =>
            {
                Ok(())
            }
            EventKind::RunProgress | EventKind::RunStage => {
                // A run first heard of here starts from what the runs table has.
                let mut s = match self.printed.get(&id) {
                    Some(s) => s.clone(),
                    None => match admin.run(id).await {
                        Ok(r) => RunState::of(&r),
                        Err(_) => RunState {
                            task,
                            attempt: 1,
                            percent: None,
                            stage: None,
                            message: None,
                        },
                    },
                };
                if let Some(a) = attempt {
                    s.attempt = a;
                }
                if e.kind == EventKind::RunStage {
                    s.stage = e.data["stage"].as_str().map(str::to_string);
                } else {
                    s.percent = e.data["percent"]
                        .as_u64()
                        .and_then(|p| u8::try_from(p).ok());
                    s.message = e.data["message"].as_str().map(str::to_string);
                }
                self.print_state(id, s, out)
            }
            EventKind::RunLog => {
                let line = log_line(id, e);
                out.print_line(&(), || line)
            }
            EventKind::RunRetried => {
                self.printed.remove(&id);
                let line = retried_line(id, e);
                out.print_line(&(), || line)
            }
            // An attempt that ended without an outcome: taken back from a node that died
            // or was cut off, or released by a node that stopped.
            EventKind::RunQueued if e.data["recovered"] == true || e.data["released"] == true => {
                self.printed.remove(&id);
                let attempt = e.data["attempt"].as_u64().unwrap_or(0);
                let line = if e.data["recovered"] == true {
                    format!(
                        "run {id}: attempt {attempt} lost with its node, queued again: {}",
                        e.data["error"]
                            .as_str()
                            .unwrap_or("its node stopped renewing the lease")
                    )
                } else {
                    format!(
                        "run {id}: attempt {attempt} released by its node, which stopped; queued again"
                    )
                };
                out.print_line(&(), || line)
            }
            EventKind::RunFinished => match admin.run(id).await {
                Ok(r) => self.print_outcome(&r, out),
                // Deleted already: what the event says.
                Err(_) => {
                    self.printed.remove(&id);
                    if !self.outcomes.insert(id) {
                        return Ok(());
                    }
                    let line = format!(
                        "run {id} of `{task}` {}",
                        e.data["status"].as_str().unwrap_or("finished")
                    );
                    out.print_line(&(), || line)
                }
            },
            _ => Ok(()),
        }
    }
}

/// `run 42: [warn] district 7: 3 records without a postcode`.
fn log_line(id: i64, e: &Event) -> String {
    format!(
        "run {id}: [{}] {}",
        e.data["level"].as_str().unwrap_or("info"),
        e.data["message"].as_str().unwrap_or("")
    )
}

/// `run 42: attempt 1 failed, retry at ...: error`.
fn retried_line(id: i64, e: &Event) -> String {
    format!(
        "run {id}: attempt {} failed, retry at {}: {}",
        e.data["attempt"],
        e.data["retry_at"].as_str().unwrap_or("?"),
        e.data["error"].as_str().unwrap_or("")
    )
}

/// One progress bar per running run.
struct Bars {
    multi: MultiProgress,
    bars: std::sync::Mutex<BTreeMap<i64, ProgressBar>>,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::new();
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
                let _ = self.multi.println(log_line(id, e));
            }
            EventKind::RunRetried => {
                let _ = self.multi.println(retried_line(id, e));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Enqueue, Registry, TaskDef};

    fn noop(
        _: crate::TaskContext,
        _: serde_json::Value,
    ) -> futures::future::BoxFuture<'static, crate::task::TaskOutcome> {
        Box::pin(async { Ok(None) })
    }

    /// A test scheduler running the one task `t`.
    async fn harness() -> crate::testing::TestScheduler {
        let registry = Registry::from_tasks([TaskDef::new("t", noop, "watch.rs")]).unwrap();
        crate::testing::TestScheduler::builder()
            .registry(registry)
            .build()
            .await
            .unwrap()
    }

    fn progress(id: i64, percent: u64) -> Event {
        let mut e = Event::new(EventKind::RunProgress, chrono::Utc::now());
        e.run_id = Some(id);
        e.task = Some("t".into());
        e.data = serde_json::json!({ "attempt": 1, "percent": percent });
        e
    }

    /// Progress a node wrote before the runs table was read, read later from the
    /// event log, is older than what the table showed: it is not printed, so the
    /// progress does not go backwards. What came after is.
    /// An attempt that ended without an outcome (taken back from a dead node, or
    /// released by a node that stopped) gets a line of its own before the next start.
    #[tokio::test]
    async fn an_attempt_lost_or_released_is_printed() {
        let t = harness().await;
        let admin = t.admin();
        let id = admin.enqueue(Enqueue::new("t")).await.unwrap().id;
        let queued = |data: serde_json::Value| {
            let mut e = Event::new(EventKind::RunQueued, chrono::Utc::now());
            e.run_id = Some(id);
            e.task = Some("t".into());
            e.data = data;
            e
        };
        let mut buf = Vec::new();
        let mut lines = Lines::default();
        {
            let mut out = Out::new(&mut buf, false);
            for data in [
                serde_json::json!({ "attempt": 1, "recovered": true, "error": "its node stopped renewing the lease; the attempt was taken back" }),
                serde_json::json!({ "attempt": 2, "released": true }),
                serde_json::json!({ "run_at": 0 }),
            ] {
                lines.apply(&queued(data), admin, &mut out).await.unwrap();
            }
        }
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                format!(
                    "run {id}: attempt 1 lost with its node, queued again: its node stopped renewing the lease; the attempt was taken back"
                ),
                format!("run {id}: attempt 2 released by its node, which stopped; queued again"),
            ],
            "{text}"
        );
        t.shutdown().await;
    }

    #[tokio::test]
    async fn progress_older_than_the_table_s_is_not_printed() {
        let t = harness().await;
        let admin = t.admin();
        let id = admin
            .enqueue(Enqueue::new("t").delay(Duration::from_secs(3600)))
            .await
            .unwrap()
            .id;
        let run = admin.run(id).await.unwrap();
        let mut buf = Vec::new();
        let mut lines = Lines::default();
        {
            let mut out = Out::new(&mut buf, false);
            // Made a second before the table is read, and a second after.
            let mut old = progress(id, 40);
            old.at -= chrono::Duration::seconds(1);
            let mut new = progress(id, 70);
            new.at += chrono::Duration::seconds(1);
            lines.refresh(&[run], admin, &mut out).await.unwrap();
            lines.apply(&old, admin, &mut out).await.unwrap();
            lines.apply(&new, admin, &mut out).await.unwrap();
        }
        let text = String::from_utf8(buf).unwrap();
        assert!(!text.contains("40%"), "{text}");
        assert!(text.contains(&format!("run {id} t: 70%")), "{text}");
        t.shutdown().await;
    }

    /// A run whose end the runs table shows before its last events are read: its
    /// outcome comes after them, not before; without its finish event it is printed
    /// from the table at the next refresh.
    #[tokio::test]
    async fn an_outcome_read_early_from_the_table_waits_for_the_run_s_last_events() {
        let t = harness().await;
        let admin = t.admin();
        let mut ended = Vec::new();
        for _ in 0..2 {
            let id = admin
                .enqueue(Enqueue::new("t").delay(Duration::from_secs(3600)))
                .await
                .unwrap()
                .id;
            admin.cancel_run(id).await.unwrap();
            ended.push(id);
        }
        let mut buf = Vec::new();
        let mut lines = Lines::default();
        {
            let mut out = Out::new(&mut buf, false);
            for &id in &ended {
                lines
                    .apply(&progress(id, 50), admin, &mut out)
                    .await
                    .unwrap();
            }
            // Both ended in the table; their last events are not read yet.
            lines.refresh(&[], admin, &mut out).await.unwrap();
            lines
                .apply(&progress(ended[0], 100), admin, &mut out)
                .await
                .unwrap();
            let mut finished = Event::new(EventKind::RunFinished, chrono::Utc::now());
            finished.run_id = Some(ended[0]);
            finished.task = Some("t".into());
            lines.apply(&finished, admin, &mut out).await.unwrap();
            // The second's finish event never comes: the next refresh prints it.
            lines.refresh(&[], admin, &mut out).await.unwrap();
            lines.refresh(&[], admin, &mut out).await.unwrap();
        }
        let text = String::from_utf8(buf).unwrap();
        let at = |needle: String| {
            text.find(&needle)
                .unwrap_or_else(|| panic!("no `{needle}` in:\n{text}"))
        };
        let (a, b) = (ended[0], ended[1]);
        assert!(
            at(format!("run {a} t: 100%")) < at(format!("run {a} of `t` cancelled")),
            "the outcome after the last progress:\n{text}"
        );
        assert_eq!(
            text.matches(&format!("run {a} of `t` cancelled")).count(),
            1
        );
        assert_eq!(
            text.matches(&format!("run {b} of `t` cancelled")).count(),
            1
        );
        t.shutdown().await;
    }

    /// A watch of run `id` in plain lines, and the run heard of through a progress
    /// event read from the log.
    async fn watching_heard_run(admin: &Admin, id: i64, out: &mut Out<'_>) -> (Watch, State) {
        let store = admin.store();
        let w = Watch {
            run: Some(id),
            filter: EventFilter::all().run(id),
        };
        let mut state = State {
            after: store.last_event_id().await.unwrap(),
            view: View::Lines(Lines::default()),
            last_refresh: None,
            order: crate::events::Reorder::default(),
            heard: false,
            ended_early: false,
        };
        store.insert_events(&[progress(id, 50)]).await.unwrap();
        // Read, then held a moment before it is shown.
        for _ in 0..2 {
            let step = state.step(&w, admin, "cli-watch-test", out).await.unwrap();
            assert!(matches!(step, Step::Watching));
            tokio::time::sleep(crate::events::HOLD).await;
        }
        (w, state)
    }

    /// The runs table shows the watched run finished before its last events are read
    /// (its node writes them a moment later, and the watch holds them a moment): the
    /// watch goes on until they come, and prints its last progress before its outcome.
    #[tokio::test]
    async fn a_watched_run_s_last_progress_is_printed_before_its_outcome() {
        let t = harness().await;
        let admin = t.admin();
        let store = admin.store();
        let id = admin
            .enqueue(Enqueue::new("t").delay(Duration::from_secs(3600)))
            .await
            .unwrap()
            .id;
        let mut buf = Vec::new();
        {
            let mut out = Out::new(&mut buf, false);
            let (w, mut state) = watching_heard_run(admin, id, &mut out).await;
            // It ends in the table; its last progress and its end follow in the log.
            store.cancel_run(id, chrono::Utc::now()).await.unwrap();
            let mut finished = Event::new(EventKind::RunFinished, chrono::Utc::now());
            finished.run_id = Some(id);
            finished.task = Some("t".into());
            store
                .insert_events(&[progress(id, 100), finished])
                .await
                .unwrap();
            state.last_refresh = None;
            let step = state.step(&w, admin, "cli-watch-test", &mut out).await;
            assert!(matches!(step.unwrap(), Step::Watching));
            tokio::time::sleep(crate::events::HOLD).await;
            let step = state.step(&w, admin, "cli-watch-test", &mut out).await;
            assert!(matches!(step.unwrap(), Step::Done));
        }
        let text = String::from_utf8(buf).unwrap();
        let at = |needle: String| {
            text.find(&needle)
                .unwrap_or_else(|| panic!("no `{needle}` in:\n{text}"))
        };
        assert!(
            at(format!("run {id} t: 50%")) < at(format!("run {id} t: 100%")),
            "{text}"
        );
        assert!(
            at(format!("run {id} t: 100%")) < at(format!("run {id} of `t` cancelled")),
            "the outcome after the last progress:\n{text}"
        );
        assert_eq!(
            text.matches(&format!("run {id} of `t` cancelled")).count(),
            1,
            "{text}"
        );
        t.shutdown().await;
    }

    /// A watched run heard of through events whose `run_finished` event never comes
    /// ends at the next refresh, with its outcome from the table, printed once.
    #[tokio::test]
    async fn a_watched_run_without_its_finish_event_ends_at_the_next_refresh() {
        let t = harness().await;
        let admin = t.admin();
        let id = admin
            .enqueue(Enqueue::new("t").delay(Duration::from_secs(3600)))
            .await
            .unwrap()
            .id;
        let mut buf = Vec::new();
        {
            let mut out = Out::new(&mut buf, false);
            let (w, mut state) = watching_heard_run(admin, id, &mut out).await;
            admin
                .store()
                .cancel_run(id, chrono::Utc::now())
                .await
                .unwrap();
            state.last_refresh = None;
            let step = state.step(&w, admin, "cli-watch-test", &mut out).await;
            assert!(matches!(step.unwrap(), Step::Watching));
            state.last_refresh = None;
            let step = state.step(&w, admin, "cli-watch-test", &mut out).await;
            assert!(matches!(step.unwrap(), Step::Done));
        }
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text.matches(&format!("run {id} of `t` cancelled")).count(),
            1,
            "{text}"
        );
        t.shutdown().await;
    }
}
