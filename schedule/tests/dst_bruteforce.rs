//! Checks `CronSchedule::next_after` around real DST transitions, under every
//! `DstPolicy`, against a brute-force walk over every UTC minute that applies the rules
//! literally:
//!
//! * an entry is *wildcard* when its second, minute or hour field starts with `*`, and
//!   *fixed-time* otherwise (decided here from the text, not by the crate);
//! * a wall-clock match fires on the first pass of its wall-clock minute, and on the
//!   second pass of a repeated minute when the policy runs repeated times twice (`Both`,
//!   or `Debian` for a wildcard entry);
//! * when the wall clock skipped minutes just before a UTC minute and one of the skipped
//!   times matches, that minute's first instant fires, once, when the policy runs gap
//!   times (`Both`, or `Debian` for a fixed-time entry).
//!
//! Wall-clock matching is taken from the same expression evaluated in UTC (which the
//! cronsim cross-check covers), so this isolates the time zone handling. Every zone's
//! offsets are whole minutes, so a 6-field match at second `s` of a wall-clock minute
//! fires at second `s` of the UTC minute showing it.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use kairos_schedule::{CronSchedule, DstPolicy, Tz};

const EXPRS: [&str; 24] = [
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
    // Ranges, lists and steps: fixed-time unless they start with `*`.
    "0 1-3 * * *",
    "30 2,14 * * *",
    "0 1-5/2 * * *",
    "*/20 2 * * *",
    "15,45 2 * * *",
    "0 */2 * * *",
    "0-59/10 1-3 * * *",
    // 6-field forms: the seconds field counts too.
    "0 30 2 * * *",
    "*/30 30 2 * * *",
    "30 45 2 * * *",
    "0,30 15,45 2 * * *",
    "0 */30 1,2 * * *",
    "15 * 2 * * *",
];

const ZONES: [Tz; 7] = [
    Tz::America__New_York,
    Tz::Europe__Berlin,
    Tz::Europe__London,
    Tz::Australia__Sydney,
    Tz::Australia__Lord_Howe, // 30-minute DST shift
    Tz::Pacific__Chatham,     // transitions at 02:45 local
    Tz::America__St_Johns,    // half-hour offset with DST
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

/// Wildcard by the text: the second (6 fields), minute or hour field starts with `*`.
fn is_wildcard(expr: &str) -> bool {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let time_fields = if fields.len() == 6 {
        &fields[..3]
    } else {
        &fields[..2]
    };
    time_fields.iter().any(|f| f.starts_with('*'))
}

/// Whether gap times run after the gap, and whether repeated times run twice.
fn rules(policy: DstPolicy, wildcard: bool) -> (bool, bool) {
    match policy {
        DstPolicy::Debian => (!wildcard, wildcard),
        DstPolicy::Skip => (false, false),
        DstPolicy::Both => (true, true),
        other => panic!("no rules for {other}"),
    }
}

/// The matching wall-clock times from `from` for `days` days.
fn wall_matches(expr: &str, from: DateTime<Utc>, days: i64) -> BTreeSet<NaiveDateTime> {
    let wall = CronSchedule::parse(expr, Tz::UTC).unwrap();
    let mut out = BTreeSet::new();
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

/// One UTC minute of the walk: what the wall clock shows, whether this is the first
/// time it shows that minute, and the wall-clock minutes skipped just before it.
struct Minute {
    utc: DateTime<Utc>,
    wall: NaiveDateTime,
    first_pass: bool,
    skipped: Option<(NaiveDateTime, NaiveDateTime)>,
}

/// Every UTC minute in `[from, from + days)`, seen in `tz`.
fn walk(tz: Tz, from: DateTime<Utc>, days: i64) -> Vec<Minute> {
    let minute = Duration::minutes(1);
    let mut out = Vec::new();
    let mut before = local(tz, from - minute);
    let mut t = from;
    while t < from + Duration::days(days) {
        let wall = local(tz, t);
        out.push(Minute {
            utc: t,
            wall,
            first_pass: tz.from_local_datetime(&wall).earliest() == Some(t.with_timezone(&tz)),
            skipped: (wall > before + minute).then_some((before + minute, wall)),
        });
        before = wall;
        t += minute;
    }
    out
}

/// Every fire time in the walk by the literal rules.
fn reference_times(
    walk: &[Minute],
    walls: &BTreeSet<NaiveDateTime>,
    gap_runs: bool,
    second_pass: bool,
) -> Vec<DateTime<Utc>> {
    let mut out: Vec<DateTime<Utc>> = Vec::new();
    for m in walk {
        if gap_runs
            && let Some((a, b)) = m.skipped
            && walls.range(a..b).next().is_some()
        {
            out.push(m.utc);
        }
        if m.first_pass || second_pass {
            for &w in walls.range(m.wall..m.wall + Duration::minutes(1)) {
                let at = m.utc + (w - m.wall);
                if out.last() != Some(&at) {
                    out.push(at);
                }
            }
        }
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
            let from = transition - Duration::days(2);
            let minutes = walk(tz, from, 6);
            for expr in EXPRS {
                let wildcard = is_wildcard(expr);
                let parsed = CronSchedule::parse(expr, tz).unwrap();
                assert_eq!(parsed.is_fixed_time(), !wildcard, "{expr}");
                let walls = wall_matches(expr, from - Duration::days(1), 8);
                for policy in DstPolicy::ALL {
                    let (gap_runs, second_pass) = rules(policy, wildcard);
                    let times = reference_times(&minutes, &walls, gap_runs, second_pass);
                    let sched = parsed.clone().with_dst(policy);
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
                                    "{expr:?} dst={policy} in {tz} after {t}: want {want}, got \
                                     {got:?}"
                                ));
                                break;
                            }
                            t = want;
                        }
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
