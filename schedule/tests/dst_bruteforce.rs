//! Checks `CronSchedule::next_after` around real DST transitions against a brute-force
//! walk over every UTC minute that applies the Debian rules literally:
//!
//! * a wildcard entry fires at every instant whose local wall-clock time matches;
//! * a fixed-time entry fires at an instant whose wall-clock time matches on its first
//!   pass, and at the end of a gap that swallowed a matching wall-clock time.
//!
//! Wall-clock matching is taken from the same expression evaluated in UTC (which the
//! cronsim cross-check covers), so this isolates the time zone handling.

use std::collections::HashSet;

use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use kairos_schedule::{CronSchedule, Tz};

const EXPRS: [&str; 11] = [
    "*/15 * * * *",
    "0 * * * *",
    "30 2 * * *",
    "30 1 * * *",
    "0 2 * * *",
    "0 3 * * *",
    "59 1 * * *",
    "45 1-3 * * *",
    "*/7 1,2 * * *",
    "0 0 * * *",
    "15 2 * * *",
];

const ZONES: [Tz; 6] = [
    Tz::America__New_York,
    Tz::Europe__Berlin,
    Tz::Australia__Sydney,
    Tz::Australia__Lord_Howe, // 30-minute DST shift
    Tz::Pacific__Chatham,     // transitions at 02:45 local
    Tz::America__St_Johns,
];

fn offset(tz: Tz, t: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&t.naive_utc())
        .fix()
        .local_minus_utc()
}

fn local(tz: Tz, t: DateTime<Utc>) -> NaiveDateTime {
    t.with_timezone(&tz).naive_local()
}

/// Offset changes in 2026, to the minute.
fn transitions(tz: Tz) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
    while t < end {
        let next = t + Duration::minutes(15);
        if offset(tz, t) != offset(tz, next) {
            let mut m = t;
            while offset(tz, m) == offset(tz, t) {
                m += Duration::minutes(1);
            }
            out.push(m);
        }
        t = next;
    }
    out
}

/// The matching wall-clock times from `from` for `days` days.
fn wall_matches(expr: &str, from: DateTime<Utc>, days: i64) -> HashSet<NaiveDateTime> {
    let wall = CronSchedule::parse(expr, Tz::UTC).unwrap();
    let mut out = HashSet::new();
    let mut t = from;
    while let Some(n) = wall
        .next_after(t)
        .filter(|&n| n < from + Duration::days(days))
    {
        out.insert(n.naive_utc());
        t = n;
    }
    out
}

/// Every fire time in `[from, from + days)` by the literal rules, walking UTC minutes.
fn reference_times(
    walls: &HashSet<NaiveDateTime>,
    fixed: bool,
    tz: Tz,
    from: DateTime<Utc>,
    days: i64,
) -> Vec<DateTime<Utc>> {
    let matches = |n: NaiveDateTime| walls.contains(&n);
    let mut out = Vec::new();
    let mut t = from;
    let mut before = local(tz, t - Duration::minutes(1));
    while t < from + Duration::days(days) {
        // Expressions are 5-field, so fire times are whole minutes.
        let here = local(tz, t);
        let fires = if fixed {
            let first_pass = tz.from_local_datetime(&here).earliest().unwrap() == t;
            // A gap ends at t when wall-clock minutes in (before, here) were skipped.
            let mut skipped = before + Duration::minutes(1);
            let mut in_gap = false;
            while skipped < here {
                in_gap |= matches(skipped);
                skipped += Duration::minutes(1);
            }
            (matches(here) && first_pass) || in_gap
        } else {
            matches(here)
        };
        if fires {
            out.push(t);
        }
        before = here;
        t += Duration::minutes(1);
    }
    out
}

#[test]
fn next_after_matches_brute_force_around_transitions() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for tz in ZONES {
        let ts = transitions(tz);
        assert_eq!(ts.len(), 2, "{tz}: {ts:?}");
        for transition in ts {
            for expr in EXPRS {
                let sched = CronSchedule::parse(expr, tz).unwrap();
                let from = transition - Duration::days(2);
                let walls = wall_matches(expr, from - Duration::days(1), 8);
                let times = reference_times(&walls, sched.is_fixed_time(), tz, from, 6);
                // Starts every 23 minutes (plus odd seconds) from 4h before to 3h after.
                for k in 0..19 {
                    let after = transition - Duration::hours(4)
                        + Duration::minutes(23 * k)
                        + Duration::seconds(k * 7 % 60);
                    let mut t = after;
                    for _ in 0..3 {
                        let want = *times.iter().find(|&&x| x > t).expect("a reference time");
                        let got = sched.next_after(t);
                        checked += 1;
                        if got != Some(want) {
                            failures.push(format!(
                                "{expr:?} in {tz} after {t}: want {want}, got {got:?}"
                            ));
                            break;
                        }
                        t = want;
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
