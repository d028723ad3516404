//! The misfire policy as a pure function of time: given a job's schedule, its first
//! unfired slot and `now`, which slots run, which are coalesced into a run, which are
//! skipped (and why), and which slot comes next. Tested without a database or a
//! runtime; the planner applies the result.
//!
//! # The rules
//! A slot found at most `misfire_grace` late is *late*: it runs. A slot found later,
//! or one that passed while the job was paused, is *missed*, and the job's misfire
//! policy decides:
//! - `skip`: missed slots are skipped, with the reason `paused` when the job was paused
//!   at that time, else `misfire`;
//! - `run_once`: one run, stamped with the latest missed slot, stands for all of them
//!   (the others are `coalesced` into it);
//! - `catch_up`: the most recent `max_catch_up` missed slots run, oldest first, each
//!   with its own slot; older ones are skipped.
//!
//! At most [`MAX_RUNS_PER_PLAN`] late slots are planned at once; the rest stay due and
//! are planned right after, so one call's work is bounded however large the grace.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

use crate::model::{JobPolicy, SkipReason, SlotOutcome};
use crate::schedule::Schedule;
use crate::store::SlotRecord;
use crate::task::Misfire;

/// Late (not missed) slots planned in one call at most.
pub(crate) const MAX_RUNS_PER_PLAN: usize = 1000;
/// Slots walked one by one before switching to a windowed search from the end.
const MAX_WALK: usize = 10_000;

/// One run to fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedSlot {
    /// Its nominal slot.
    pub(crate) slot: DateTime<Utc>,
    /// True for a missed slot run under `catch_up`.
    pub(crate) caught_up: bool,
    /// Missed slots this run stands for (`run_once`), first and last (the run's own
    /// slot included).
    pub(crate) coalesced: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// What to do with a job's due slots.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SlotPlan {
    /// Runs to fire, oldest slot first.
    pub(crate) runs: Vec<PlannedSlot>,
    /// Missed slots that pass without a run, oldest first.
    pub(crate) skipped: Vec<SlotRecord>,
    /// The last slot accounted for.
    pub(crate) last_slot: DateTime<Utc>,
    /// The next slot to plan (may still be due when the plan was capped).
    pub(crate) next: Option<DateTime<Utc>>,
}

/// The job's pauses, `(from, to)` in time order, to tell `paused` from `misfire`.
pub(crate) type PauseWindows<'a> = &'a [(DateTime<Utc>, DateTime<Utc>)];

/// Plans a job whose first unfired slot `due` is at or before `now`.
pub(crate) fn plan_due(
    schedule: &Schedule,
    anchor: DateTime<Utc>,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: &JobPolicy,
    pauses: PauseWindows<'_>,
) -> SlotPlan {
    let grace = Duration::from_std(policy.misfire_grace).unwrap_or(Duration::MAX);
    // Slots that passed while the job was paused are missed however recent: the grace
    // absorbs a node's delays, not an operator's pause.
    let resumed = pauses
        .iter()
        .map(|&(_, to)| to)
        .filter(|to| *to >= due && *to <= now)
        .max();
    let cutoff = now
        .checked_sub_signed(grace)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
        .max(resumed.map_or(DateTime::<Utc>::MIN_UTC, |r| r + Duration::milliseconds(1)));
    let next_of = |t: DateTime<Utc>| schedule.next_after(anchor, t);
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    let mut last_slot = due;
    let mut late_from = Some(due);
    if due < cutoff {
        // The latest missed slot, and (for catch_up) the ones before it.
        let want = match policy.misfire {
            Misfire::CatchUp => policy.max_catch_up.max(1) as usize + 1,
            _ => 2,
        };
        let before_cutoff = cutoff - Duration::milliseconds(1);
        let tail = tail(schedule, anchor, due, before_cutoff, want);
        let latest = *tail.last().unwrap_or(&due);
        last_slot = latest;
        late_from = next_of(latest);
        match policy.misfire {
            Misfire::Skip => {
                skipped.extend(split_by_pause(schedule, anchor, due, latest, pauses));
            }
            Misfire::RunOnce => runs.push(PlannedSlot {
                slot: latest,
                caught_up: false,
                coalesced: (due < latest).then_some((due, latest)),
            }),
            Misfire::CatchUp => {
                let n = policy.max_catch_up.max(1) as usize;
                let run_slots: Vec<DateTime<Utc>> =
                    tail.iter().rev().take(n).rev().copied().collect();
                let first_run = run_slots[0];
                if first_run > due {
                    // The slot just before the first run is in the tail when more
                    // than `n` were missed.
                    let before = tail
                        .iter()
                        .rev()
                        .find(|t| **t < first_run)
                        .copied()
                        .unwrap_or(due);
                    skipped.extend(split_by_pause(schedule, anchor, due, before, pauses));
                }
                runs.extend(run_slots.into_iter().map(|slot| PlannedSlot {
                    slot,
                    caught_up: true,
                    coalesced: None,
                }));
            }
        }
    }
    // Late slots (within the grace) run, each for itself.
    let mut next = late_from;
    while let Some(t) = next.filter(|t| *t <= now) {
        if runs.len() >= MAX_RUNS_PER_PLAN {
            break;
        }
        runs.push(PlannedSlot {
            slot: t,
            caught_up: false,
            coalesced: None,
        });
        last_slot = t;
        next = next_of(t);
    }
    SlotPlan {
        runs,
        skipped,
        last_slot,
        next,
    }
}

/// The last (up to) `n` slots in `[lo, hi]`, ascending; `lo` must be a slot.
fn tail(
    schedule: &Schedule,
    anchor: DateTime<Utc>,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
    n: usize,
) -> Vec<DateTime<Utc>> {
    let mut buf = VecDeque::with_capacity(n + 1);
    let mut s = Some(lo);
    let mut steps = 0;
    while let Some(t) = s.filter(|t| *t <= hi) {
        buf.push_back(t);
        if buf.len() > n {
            buf.pop_front();
        }
        steps += 1;
        if steps > MAX_WALK {
            return tail_from_end(schedule, anchor, lo, hi, n);
        }
        s = schedule.next_after(anchor, t);
    }
    buf.into()
}

/// Like [`tail`] for ranges too long to walk: searches windows ending at `hi`, growing
/// until one holds `n` slots or reaches `lo`.
fn tail_from_end(
    schedule: &Schedule,
    anchor: DateTime<Utc>,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
    n: usize,
) -> Vec<DateTime<Utc>> {
    let mut window = Duration::seconds(1);
    loop {
        let start = hi.checked_sub_signed(window).unwrap_or(lo).max(lo);
        let mut found = VecDeque::new();
        let mut s = if start == lo {
            Some(lo)
        } else {
            schedule.next_after(anchor, start - Duration::milliseconds(1))
        };
        let mut steps = 0;
        while let Some(t) = s.filter(|t| *t <= hi) {
            found.push_back(t);
            if found.len() > n {
                found.pop_front();
            }
            steps += 1;
            if steps > MAX_WALK * 4 {
                break;
            }
            s = schedule.next_after(anchor, t);
        }
        if found.len() >= n || start == lo {
            return found.into();
        }
        window = window.checked_mul(4).unwrap_or(Duration::MAX);
    }
}

/// `[first, last]` as skipped records, split where the job's pauses start and end
/// (reason `paused` for slots inside a pause, `misfire` outside).
fn split_by_pause(
    schedule: &Schedule,
    anchor: DateTime<Utc>,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    pauses: PauseWindows<'_>,
) -> Vec<SlotRecord> {
    let rec = |first, last, reason| SlotRecord {
        first,
        last,
        outcome: SlotOutcome::Skipped,
        reason: Some(reason),
    };
    let before = |t: DateTime<Utc>| t - Duration::milliseconds(1);
    let mut out = Vec::new();
    // `from` is the first slot not yet recorded.
    let mut from = Some(first);
    for &(p, r) in pauses {
        let Some(start) = from.filter(|t| *t <= last) else {
            break;
        };
        if r < start || r < p {
            continue;
        }
        // The first slot inside the pause.
        let inside = if start >= p {
            Some(start)
        } else {
            schedule.next_after(anchor, before(p))
        };
        let Some(inside) = inside.filter(|t| *t <= r && *t <= last) else {
            continue;
        };
        if start < inside
            && let Some(b) = tail(schedule, anchor, start, before(inside), 1).last()
        {
            out.push(rec(start, *b, SkipReason::Misfire));
        }
        let inside_last = *tail(schedule, anchor, inside, r.min(last), 1)
            .last()
            .unwrap_or(&inside);
        out.push(rec(inside, inside_last, SkipReason::Paused));
        from = schedule.next_after(anchor, inside_last);
    }
    if let Some(start) = from.filter(|t| *t <= last) {
        out.push(rec(start, last, SkipReason::Misfire));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{CronSchedule, Tz};
    use crate::task::Misfire;
    use std::time::Duration as Std;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn minutely() -> Schedule {
        Schedule::Every(Std::from_secs(60))
    }

    fn policy(misfire: Misfire, max_catch_up: u32) -> JobPolicy {
        JobPolicy {
            misfire,
            max_catch_up,
            ..JobPolicy::default()
        }
    }

    const A: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn on_time_slot_runs_and_the_next_follows() {
        let p = plan_due(
            &minutely(),
            t(A),
            t("2026-01-01T00:01:00Z"),
            t("2026-01-01T00:01:00.003Z"),
            &JobPolicy::default(),
            &[],
        );
        assert_eq!(
            p.runs,
            [PlannedSlot {
                slot: t("2026-01-01T00:01:00Z"),
                caught_up: false,
                coalesced: None
            }]
        );
        assert!(p.skipped.is_empty());
        assert_eq!(p.last_slot, t("2026-01-01T00:01:00Z"));
        assert_eq!(p.next, Some(t("2026-01-01T00:02:00Z")));
    }

    #[test]
    fn late_within_grace_each_slot_runs() {
        // 25 s late with a 30 s grace: not missed.
        let s = Schedule::Every(Std::from_secs(10));
        let p = plan_due(
            &s,
            t(A),
            t("2026-01-01T00:00:10Z"),
            t("2026-01-01T00:00:35Z"),
            &JobPolicy::default(),
            &[],
        );
        let slots: Vec<_> = p.runs.iter().map(|r| r.slot).collect();
        assert_eq!(
            slots,
            [
                t("2026-01-01T00:00:10Z"),
                t("2026-01-01T00:00:20Z"),
                t("2026-01-01T00:00:30Z")
            ]
        );
        assert_eq!(p.next, Some(t("2026-01-01T00:00:40Z")));
    }

    #[test]
    fn run_once_coalesces_missed_slots_into_the_latest() {
        let p = plan_due(
            &minutely(),
            t(A),
            t("2026-01-01T00:01:00Z"),
            t("2026-01-01T00:10:10Z"),
            &policy(Misfire::RunOnce, 10),
            &[],
        );
        // 00:10 is 10 s late (within grace): it runs for itself. 00:01-00:09 missed.
        assert_eq!(
            p.runs,
            [
                PlannedSlot {
                    slot: t("2026-01-01T00:09:00Z"),
                    caught_up: false,
                    coalesced: Some((t("2026-01-01T00:01:00Z"), t("2026-01-01T00:09:00Z")))
                },
                PlannedSlot {
                    slot: t("2026-01-01T00:10:00Z"),
                    caught_up: false,
                    coalesced: None
                }
            ]
        );
        assert!(p.skipped.is_empty());
        assert_eq!(p.next, Some(t("2026-01-01T00:11:00Z")));
    }

    #[test]
    fn skip_records_missed_slots_with_their_reason() {
        let pause = [(t("2026-01-01T00:03:30Z"), t("2026-01-01T00:06:30Z"))];
        let p = plan_due(
            &minutely(),
            t(A),
            t("2026-01-01T00:01:00Z"),
            t("2026-01-01T00:08:45Z"),
            &policy(Misfire::Skip, 10),
            &pause,
        );
        assert!(p.runs.is_empty(), "00:08 is 45 s late: missed too");
        let got: Vec<_> = p
            .skipped
            .iter()
            .map(|r| (r.first, r.last, r.reason))
            .collect();
        assert_eq!(
            got,
            [
                (
                    t("2026-01-01T00:01:00Z"),
                    t("2026-01-01T00:03:00Z"),
                    Some(SkipReason::Misfire)
                ),
                (
                    t("2026-01-01T00:04:00Z"),
                    t("2026-01-01T00:06:00Z"),
                    Some(SkipReason::Paused)
                ),
                (
                    t("2026-01-01T00:07:00Z"),
                    t("2026-01-01T00:08:00Z"),
                    Some(SkipReason::Misfire)
                ),
            ]
        );
        assert_eq!(p.last_slot, t("2026-01-01T00:08:00Z"));
        assert_eq!(p.next, Some(t("2026-01-01T00:09:00Z")));
    }

    /// A pause shorter than the grace: its slots are missed all the same (one run
    /// under `run_once`, none under `skip`), and a slot after the resume runs late.
    #[test]
    fn slots_of_a_short_pause_are_missed_though_within_the_grace() {
        let m = |s: &str| t(&format!("2026-01-01T00:{s}Z"));
        let every_10s = Schedule::Every(Std::from_secs(10));
        let pauses = [(m("00:05"), m("00:25"))];
        let plan = |misfire| {
            plan_due(
                &every_10s,
                t(A),
                m("00:10"),
                m("00:31"),
                &policy(misfire, 10),
                &pauses,
            )
        };
        let p = plan(Misfire::RunOnce);
        assert_eq!(
            p.runs,
            [
                PlannedSlot {
                    slot: m("00:20"),
                    caught_up: false,
                    coalesced: Some((m("00:10"), m("00:20"))),
                },
                PlannedSlot {
                    slot: m("00:30"),
                    caught_up: false,
                    coalesced: None,
                },
            ]
        );
        let p = plan(Misfire::Skip);
        assert_eq!(p.runs.len(), 1, "{p:?}");
        assert_eq!(p.runs[0].slot, m("00:30"));
        let got: Vec<_> = p
            .skipped
            .iter()
            .map(|r| (r.first, r.last, r.reason.unwrap()))
            .collect();
        assert_eq!(got, [(m("00:10"), m("00:20"), SkipReason::Paused)]);
        // Without the pause, the same slots are late and run.
        let p = plan_due(
            &every_10s,
            t(A),
            m("00:10"),
            m("00:31"),
            &policy(Misfire::Skip, 10),
            &[],
        );
        assert_eq!(p.runs.len(), 3, "{p:?}");
    }

    #[test]
    fn every_pause_is_told_from_downtime() {
        // Paused 1:30-2:30 and 3:30-4:30, no node running throughout.
        let m = |s: &str| t(&format!("2026-01-01T00:{s}Z"));
        let pauses = [(m("01:30"), m("02:30")), (m("03:30"), m("04:30"))];
        let p = plan_due(
            &minutely(),
            t(A),
            m("01:00"),
            m("05:45"),
            &policy(Misfire::Skip, 10),
            &pauses,
        );
        let got: Vec<_> = p
            .skipped
            .iter()
            .map(|r| (r.first, r.last, r.reason.unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (m("01:00"), m("01:00"), SkipReason::Misfire),
                (m("02:00"), m("02:00"), SkipReason::Paused),
                (m("03:00"), m("03:00"), SkipReason::Misfire),
                (m("04:00"), m("04:00"), SkipReason::Paused),
                (m("05:00"), m("05:00"), SkipReason::Misfire),
            ]
        );
    }

    #[test]
    fn catch_up_runs_the_most_recent_missed_slots_oldest_first() {
        let p = plan_due(
            &minutely(),
            t(A),
            t("2026-01-01T00:01:00Z"),
            t("2026-01-01T00:20:40Z"),
            &policy(Misfire::CatchUp, 3),
            &[],
        );
        let slots: Vec<_> = p.runs.iter().map(|r| (r.slot, r.caught_up)).collect();
        assert_eq!(
            slots,
            [
                (t("2026-01-01T00:18:00Z"), true),
                (t("2026-01-01T00:19:00Z"), true),
                (t("2026-01-01T00:20:00Z"), true),
            ],
            "00:20 is 40 s late: missed, and the newest of the three"
        );
        assert_eq!(
            p.skipped,
            [SlotRecord {
                first: t("2026-01-01T00:01:00Z"),
                last: t("2026-01-01T00:17:00Z"),
                outcome: SlotOutcome::Skipped,
                reason: Some(SkipReason::Misfire)
            }]
        );
    }

    #[test]
    fn catch_up_with_few_missed_runs_them_all() {
        let p = plan_due(
            &minutely(),
            t(A),
            t("2026-01-01T00:01:00Z"),
            t("2026-01-01T00:03:40Z"),
            &policy(Misfire::CatchUp, 10),
            &[],
        );
        assert_eq!(p.runs.len(), 3);
        assert!(p.runs.iter().all(|r| r.caught_up));
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn long_outages_of_second_level_crons_are_planned_without_walking_every_slot() {
        let s = Schedule::Cron(CronSchedule::parse("* * * * * *", Tz::UTC).unwrap());
        let due = t("2026-01-01T00:00:01Z");
        let now = t("2026-03-01T00:00:00Z"); // ~5 million seconds later
        let p = plan_due(&s, due, due, now, &policy(Misfire::CatchUp, 2), &[]);
        let cut = now - Duration::seconds(30);
        let caught: Vec<_> = p
            .runs
            .iter()
            .filter(|r| r.caught_up)
            .map(|r| r.slot)
            .collect();
        assert_eq!(
            caught,
            [cut - Duration::seconds(2), cut - Duration::seconds(1)]
        );
        assert_eq!(p.skipped[0].first, due);
        assert_eq!(p.skipped[0].last, cut - Duration::seconds(3));
        // The 30 late-but-not-missed seconds, plus `now` itself.
        assert_eq!(p.runs.len() - caught.len(), 31);
    }

    #[test]
    fn a_missed_one_off_still_runs_once_by_default() {
        let at = t("2026-01-01T00:00:00Z");
        let p = plan_due(
            &Schedule::Once(at),
            at,
            at,
            t("2026-01-02T00:00:00Z"),
            &JobPolicy::default(),
            &[],
        );
        assert_eq!(p.runs.len(), 1);
        assert_eq!(p.runs[0].slot, at);
        assert_eq!(p.next, None);
    }

    #[test]
    fn plans_are_capped_and_resume_where_they_stopped() {
        let s = Schedule::Every(Std::from_millis(10));
        let due = t(A);
        let now = due + Duration::seconds(20); // 2001 slots, all within a 30 s grace
        let p = plan_due(&s, due, due, now, &JobPolicy::default(), &[]);
        assert_eq!(p.runs.len(), MAX_RUNS_PER_PLAN);
        let next = p.next.unwrap();
        assert_eq!(
            next,
            due + Duration::milliseconds(10 * MAX_RUNS_PER_PLAN as i64)
        );
        assert!(next <= now, "still due: the planner goes on");
    }
}
