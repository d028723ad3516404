//! Numbers and checks for operators: statistics over recent runs, a queued run's
//! estimated start and completion, and the health check behind `kairos health`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Admin;
use crate::error::Error;
use crate::model::{Health, Run, RunEstimate, RunStatus, Stats, TaskStats};
use crate::store::StatsScope;

/// Finished runs read for statistics at most (the most recent).
const SAMPLE: i64 = 50_000;

/// How long a node started with the default settings may stay silent before it counts
/// as dead; [`Admin::health`] without a max age judges each node by its own setting.
pub const DEFAULT_HEARTBEAT_MAX_AGE: Duration = crate::runtime::DEFAULT_HEARTBEAT_TIMEOUT;

/// Why a health check's max age cannot be used, if it cannot: no heartbeat is ever 0s
/// old, so a zero age would call every cluster unhealthy.
pub(crate) fn max_age_problem(max_age: Duration) -> Option<&'static str> {
    max_age.is_zero().then_some(
        "a max age of zero calls every node stale; give how old a node's last heartbeat \
         may be, e.g. 10s",
    )
}

impl Admin {
    /// Counts by status, queue depths, completions over the last minute and hour, and
    /// per-task durations, for runs of `task` (all when `None`) carrying every tag.
    pub async fn stats(
        &self,
        task: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<Stats, Error> {
        let now = self.now();
        let scope = StatsScope {
            task: task.map(str::to_string),
            tags: tags.to_vec(),
        };
        let mut counts: BTreeMap<RunStatus, u64> =
            RunStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        counts.extend(self.store().status_counts(&scope).await?);
        if counts.values().all(|&n| n == 0)
            && let Some(task) = task
            && let Some(e) = self.unknown_task_filter(task).await?
        {
            return Err(e);
        }
        let hour = self
            .store()
            .finished_since(now - chrono::Duration::hours(1), &scope, SAMPLE)
            .await?;
        let minute_ago = now - chrono::Duration::minutes(1);
        let done = hour.len() as u64;
        let ok = hour
            .iter()
            .filter(|f| f.status == RunStatus::Succeeded)
            .count() as u64;
        let bad = hour
            .iter()
            .filter(|f| matches!(f.status, RunStatus::Failed | RunStatus::TimedOut))
            .count() as u64;
        let mut by_task: BTreeMap<&str, Vec<&crate::store::Finished>> = BTreeMap::new();
        for f in &hour {
            by_task.entry(f.task.as_str()).or_default().push(f);
        }
        let tasks = by_task
            .into_iter()
            .map(|(task, runs)| {
                let mut d: Vec<u64> = runs
                    .iter()
                    .filter(|f| f.status != RunStatus::Cancelled && f.status != RunStatus::Expired)
                    .filter_map(|f| f.duration_ms.and_then(|x| u64::try_from(x).ok()))
                    .collect();
                d.sort_unstable();
                TaskStats {
                    task: task.to_string(),
                    finished: runs.len() as u64,
                    succeeded: runs
                        .iter()
                        .filter(|f| f.status == RunStatus::Succeeded)
                        .count() as u64,
                    failed: runs
                        .iter()
                        .filter(|f| matches!(f.status, RunStatus::Failed | RunStatus::TimedOut))
                        .count() as u64,
                    mean_duration_ms: (!d.is_empty())
                        .then(|| d.iter().sum::<u64>() / d.len() as u64),
                    p95_duration_ms: percentile(&d, 0.95),
                }
            })
            .collect();
        let mut queues = self.store().queues().await?;
        if task.is_some() || !tags.is_empty() {
            // Queue depths are about the whole queue; keep the queues the scope uses:
            // the task's own, and those of its unfinished runs.
            let mut used: Vec<String> = self
                .runs(&crate::RunFilter {
                    task: scope.task.clone(),
                    tags: scope.tags.clone(),
                    status: vec![RunStatus::Queued, RunStatus::Running],
                    page_size: 1000,
                    ..Default::default()
                })
                .await?
                .runs
                .into_iter()
                .map(|r| r.queue)
                .collect();
            if let Some(t) = task
                && let Ok(view) = self.task_view(t).await
            {
                used.push(view.policy.queue);
            }
            queues.retain(|q| used.contains(&q.name));
        }
        Ok(Stats {
            // Whole milliseconds, as every other time kairos gives.
            at: crate::clock::whole_ms(now),
            running: counts[&RunStatus::Running],
            queued: counts[&RunStatus::Queued],
            counts,
            queues,
            completed_last_minute: hour.iter().filter(|f| f.finished_at >= minute_ago).count()
                as u64,
            completed_last_hour: done,
            per_minute_last_hour: done as f64 / 60.0,
            completion_rate: (done > 0).then(|| ok as f64 / done as f64),
            failure_rate: (done > 0).then(|| bad as f64 / done as f64),
            tasks,
        })
    }

    /// When a queued run should start and end; `None` for a run that is not queued,
    /// or whose time to live has run out (it can only expire, at a node's next look).
    pub async fn estimate(&self, run: &Run) -> Result<Option<RunEstimate>, Error> {
        let now = self.now();
        if run.status != RunStatus::Queued || run.expires_at.is_some_and(|t| t <= now) {
            return Ok(None);
        }
        let ahead = self
            .store()
            .queued_ahead(&run.queue, run.id, run.priority, run.run_at, now)
            .await?;
        // Who serves the queue: live workers, bounded by the queue's and the task's
        // limits.
        let live = self.store().live_workers(None).await?;
        let mut capacity = live.unpaused.max(1);
        let queue = self
            .store()
            .queues()
            .await?
            .into_iter()
            .find(|q| q.name == run.queue);
        if let Some(c) = queue.as_ref().and_then(|q| q.concurrency) {
            capacity = capacity.min(u64::from(c));
        }
        let held = if queue.as_ref().is_some_and(|q| q.paused) {
            Some(format!(
                "its queue `{}` is paused: it starts once the queue is resumed",
                run.queue
            ))
        } else if live.workers == 0 {
            Some("no node is alive: it starts once a node runs".to_string())
        } else if live.unpaused == 0 {
            Some("every live node is paused: it starts once a node is resumed".to_string())
        } else {
            None
        };
        let view = self.task_view(&run.task).await.ok();
        if let Some(m) = view.as_ref().and_then(|v| v.policy.max_instances) {
            capacity = capacity.min(u64::from(m));
        }
        let scope = StatsScope {
            task: Some(run.task.clone()),
            tags: Vec::new(),
        };
        let recent = self
            .store()
            .finished_since(now - chrono::Duration::hours(1), &scope, 1000)
            .await?;
        let durations: Vec<i64> = recent.iter().filter_map(|f| f.duration_ms).collect();
        let mean =
            (!durations.is_empty()).then(|| durations.iter().sum::<i64>() / durations.len() as i64);
        // Whole milliseconds, as every stored time is.
        let earliest = crate::clock::whole_ms(run.run_at.max(now));
        // The runs of the queue that are running hold slots too.
        let running = queue.as_ref().map_or(0, |q| q.running);
        let mut start = by_rounds(earliest, ahead + running, capacity, mean);
        if let Some((n, window)) = queue.as_ref().and_then(|q| q.rate_limit.zip(q.rate_window)) {
            let window = chrono::Duration::from_std(window).unwrap_or_default();
            let recent = self
                .store()
                .queue_starts_since(&run.queue, now - window)
                .await?;
            start = start.max(by_rate(earliest, ahead, n, window, recent));
        }
        Ok(Some(RunEstimate {
            ahead,
            start,
            completion: mean.map(|m| start + chrono::Duration::milliseconds(m)),
            held,
        }))
    }

    /// Healthy when the database answers and a running node beat within `max_age`, or
    /// with `None` within its own heartbeat timeout (the node's `heartbeat_timeout`,
    /// 10s by default), which is when `kairos nodes list` calls it alive.
    pub async fn health(&self, max_age: Option<Duration>) -> Health {
        if let Err(e) = self.store().ping().await {
            return Health::unreachable(&e);
        }
        let mut h = Health {
            healthy: false,
            database: true,
            live_workers: 0,
            last_heartbeat: None,
            reasons: Vec::new(),
            warnings: Vec::new(),
        };
        match self.store().live_workers(max_age).await {
            Ok(live) => {
                h.live_workers = live.workers;
                h.last_heartbeat = live.newest.or(live.last_beat);
                if live.workers > 0 && live.unpaused == 0 {
                    h.warnings.push(
                        "every live node is paused: no run starts until `kairos nodes resume`"
                            .into(),
                    );
                }
                if live.workers == 0 {
                    let within = match max_age {
                        Some(age) => {
                            format!("in the last {}", crate::schedule::format_duration(age))
                        }
                        None => "within its heartbeat timeout".to_string(),
                    };
                    h.reasons.push(match live.newest_age {
                        Some(age) => format!(
                            "no node beat {within}: the newest heartbeat is {} old",
                            age_text(age)
                        ),
                        None => match live.last_beat {
                            Some(t) => format!(
                                "no node is running against this database (the last heartbeat \
                                 was at {})",
                                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                            ),
                            None => "no node is running against this database".to_string(),
                        },
                    });
                }
            }
            Err(e) => h.reasons.push(format!("cannot read the nodes: {e}")),
        }
        h.healthy = h.reasons.is_empty();
        h
    }
}

/// A heartbeat's age: to the millisecond under a minute (a `--max-age` of a few
/// hundred milliseconds is compared with it), in whole seconds above.
fn age_text(age: Duration) -> String {
    crate::schedule::format_duration(if age.as_secs() < 60 {
        Duration::from_millis(age.as_millis() as u64)
    } else {
        Duration::from_secs(age.as_secs())
    })
}

/// The `p` quantile of sorted values (nearest rank).
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    #[test]
    fn heartbeat_ages_to_the_millisecond_under_a_minute() {
        use std::time::Duration;
        assert_eq!(super::age_text(Duration::from_micros(412_700)), "412ms");
        assert_eq!(super::age_text(Duration::from_millis(2_050)), "2s50ms");
        assert_eq!(super::age_text(Duration::from_millis(61_500)), "1m1s");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(super::percentile(&v, 0.95), Some(95));
        assert_eq!(super::percentile(&[7], 0.95), Some(7));
        assert_eq!(super::percentile(&[], 0.95), None);
    }
}

/// When a run can start with `before` runs ahead of it or holding slots (running), and
/// `capacity` slots each freed after `mean` ms: after `before / capacity` whole rounds.
fn by_rounds(
    earliest: DateTime<Utc>,
    before: u64,
    capacity: u64,
    mean: Option<i64>,
) -> DateTime<Utc> {
    match mean {
        Some(m) => {
            let rounds = i64::try_from(before / capacity.max(1)).unwrap_or(i64::MAX);
            earliest + chrono::Duration::milliseconds(m.saturating_mul(rounds))
        }
        None => earliest,
    }
}

/// When a run with `ahead` runs before it can start in a queue allowing `n` starts per
/// `window`, given the starts already in the window (`recent`, oldest first): each
/// start waits for the one `n` starts before it to leave the window.
fn by_rate(
    earliest: DateTime<Utc>,
    ahead: u64,
    n: u32,
    window: chrono::Duration,
    mut recent: Vec<DateTime<Utc>>,
) -> DateTime<Utc> {
    let n = n.max(1) as usize;
    // A queue far behind is estimated only so far: the figure is rough by then anyway.
    let ahead = usize::try_from(ahead).unwrap_or(usize::MAX).min(100_000);
    let mut at = earliest;
    for _ in 0..=ahead {
        at = match recent.len().checked_sub(n) {
            Some(i) => earliest.max(recent[i] + window),
            None => earliest,
        };
        recent.push(at);
    }
    at
}

#[cfg(test)]
mod estimate_tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn rounds_count_the_runs_holding_slots() {
        // One slot, one running, none queued ahead: after the running one.
        assert_eq!(by_rounds(t(0), 1, 1, Some(10_000)), t(10));
        // Four slots, one ahead: at once.
        assert_eq!(by_rounds(t(0), 1, 4, Some(10_000)), t(0));
        assert_eq!(by_rounds(t(0), 8, 4, Some(10_000)), t(20));
        assert_eq!(by_rounds(t(0), 8, 4, None), t(0));
    }

    #[test]
    fn a_rate_limit_spaces_the_starts_by_its_window() {
        let minute = chrono::Duration::seconds(60);
        // 5 a minute, 5 started 10 s ago: the next waits for the window.
        let recent = vec![t(-10); 5];
        assert_eq!(by_rate(t(0), 0, 5, minute, recent.clone()), t(50));
        // Six ahead of it: the five after the window, then a second window.
        assert_eq!(by_rate(t(0), 6, 5, minute, recent), t(110));
        // Budget left: at once.
        assert_eq!(by_rate(t(0), 3, 5, minute, vec![t(-10)]), t(0));
    }
}
