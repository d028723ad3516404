//! Schedules for kairos: crontab-true cron expressions evaluated in an IANA time zone,
//! fixed intervals and one-off times, plus the duration syntax (`"30m"`, `"1h30m"`).
//!
//! This crate is shared by the runtime and by `kairos-macros`, so an expression the
//! macro accepts at compile time is exactly one the scheduler can run.
//!
//! This file owns the [`Schedule`] enum, time zone parsing and the shared
//! [`ScheduleError`]; the `cron` module owns [`CronSchedule`] (parsing and the
//! next-fire-time search with Debian cron's day and DST rules), and the `duration` module
//! owns [`parse_duration`], [`parse_interval`] and [`format_duration`].

mod cron;
mod duration;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
pub use chrono_tz::Tz;

pub use crate::cron::CronSchedule;
pub use crate::duration::{MAX_DURATION, format_duration, parse_duration, parse_interval};

/// Why a schedule, zone or duration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The cron expression does not parse. The message shows at most 80 characters
    /// of the expression (and its length when it is longer).
    #[error("invalid cron expression {}: {reason}", quote(.expr))]
    InvalidCron {
        /// The expression as given.
        expr: String,
        /// What is wrong, naming the field and how to fix it.
        reason: String,
    },
    /// The time zone is not an IANA zone name. The message shows at most 80 characters
    /// of the name.
    #[error("unknown time zone {}: {hint}", quote(.0), hint = timezone_hint(.0))]
    UnknownTimezone(String),
    /// The duration does not parse, or is longer than [`MAX_DURATION`]. The message
    /// shows at most 80 characters of the text.
    #[error("invalid duration {}: {reason}", quote(.input))]
    InvalidDuration {
        /// The text as given.
        input: String,
        /// What is wrong.
        reason: String,
    },
}

/// How many characters of rejected input an error message shows: enough to recognise it,
/// while a pasted file or a runaway generated string still gives a one-line message.
const ECHO_LIMIT: usize = 80;

/// `text` in backticks for an error message: whole if it has at most [`ECHO_LIMIT`]
/// characters, else its start, `…` and its length (``"`0 0 * * * xxxx…` (10000
/// characters)"``).
pub(crate) fn quote(text: &str) -> String {
    let len = text.chars().count();
    if len <= ECHO_LIMIT {
        return format!("`{text}`");
    }
    let head: String = text.chars().take(ECHO_LIMIT - 1).collect();
    format!("`{head}…` ({len} characters)")
}

/// How a cron job treats wall-clock times that a daylight-saving change skips (the
/// spring-forward gap) or repeats (the fall-back overlap).
///
/// An entry is *wildcard* when its second, minute or hour field starts with `*`
/// (Debian's `MIN_STAR`/`HR_STAR`, extended to the seconds field); every other entry,
/// ranges and lists included, is *fixed-time*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum DstPolicy {
    /// Debian cron's rule (the default): a fixed-time entry whose time falls in a gap
    /// runs at the first instant after the gap, and one repeated by a fall-back runs
    /// once; a wildcard entry fires on both passes of a repeated hour and never inside
    /// a gap.
    ///
    /// An entry runs once after a gap however many of its times the gap held
    /// (`0,30 2 * * *` in a one-hour gap), where Debian's daemon runs it once per
    /// skipped match, back to back.
    #[default]
    Debian,
    /// Times inside a gap do not run, and a repeated time runs once (on the first
    /// pass), whatever the entry: never run at a time the wall clock did not show,
    /// never twice.
    Skip,
    /// Times inside a gap run at the first instant after it (once, however many match,
    /// and not again if the entry also matches that instant), and repeated times run on
    /// both passes, whatever the entry: never miss a wall-clock match.
    Both,
}

impl DstPolicy {
    /// Every policy, in the order the docs list them.
    pub const ALL: [DstPolicy; 3] = [DstPolicy::Debian, DstPolicy::Skip, DstPolicy::Both];

    /// The name used in `jobs.toml`, the macro and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            DstPolicy::Debian => "debian",
            DstPolicy::Skip => "skip",
            DstPolicy::Both => "both",
        }
    }
}

impl fmt::Display for DstPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DstPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DstPolicy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown dst policy `{s}`; use one of: debian, skip, both"))
    }
}

/// When a job fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// On each match of a cron expression.
    Cron(CronSchedule),
    /// Every fixed interval, counted from the job's anchor (its first slot). A zero
    /// interval never fires (parse intervals with [`parse_interval`], which rejects it).
    Every(Duration),
    /// Once, at this instant.
    Once(DateTime<Utc>),
}

impl Schedule {
    /// The first slot strictly after `after`. `anchor` is the first slot of an interval
    /// job (slots are `anchor + k * interval`, so the anchor itself when
    /// `after < anchor`); cron and one-off schedules ignore it.
    pub fn next_after(&self, anchor: DateTime<Utc>, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(c) => c.next_after(after),
            Schedule::Every(d) => next_slot(*d, anchor, after),
            Schedule::Once(t) => (*t > after).then_some(*t),
        }
    }
}

/// `anchor + k * step` for the smallest `k >= 0` that is strictly after `after`.
fn next_slot(step: Duration, anchor: DateTime<Utc>, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if after < anchor {
        return Some(anchor);
    }
    let step = i128::try_from(step.as_nanos()).ok()?;
    if step == 0 {
        return None;
    }
    let diff = after - anchor;
    let diff = i128::from(diff.num_seconds()) * 1_000_000_000 + i128::from(diff.subsec_nanos());
    let k = diff / step + 1;
    let offset = k.checked_mul(step)?;
    let secs = i64::try_from(offset / 1_000_000_000).ok()?;
    let nanos = i64::try_from(offset % 1_000_000_000).ok()?;
    let delta = chrono::TimeDelta::try_seconds(secs)?
        .checked_add(&chrono::TimeDelta::nanoseconds(nanos))?;
    anchor.checked_add_signed(delta)
}

impl fmt::Display for Schedule {
    /// `cron "0 0 * * *" (Asia/Shanghai)`, `every 15m`, `once at 2026-03-08T07:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron(c) => c.fmt(f),
            Schedule::Every(d) => write!(f, "every {}", format_duration(*d)),
            Schedule::Once(t) => write!(
                f,
                "once at {}",
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            ),
        }
    }
}

/// Parses an IANA zone name (`Europe/Paris`, `America/New_York`, `UTC`); surrounding
/// whitespace is ignored, case is not (the error suggests the right spelling).
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownTimezone(name.to_string()))
}

/// The help text for an unknown zone: a close match if there is an obvious one.
fn timezone_hint(name: &str) -> String {
    let wanted = name.trim();
    let close = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .find(|n| n.eq_ignore_ascii_case(wanted))
        .or_else(|| {
            // A bare city (`paris`) or a `_`-less spelling (`new york`).
            let norm = |s: &str| s.to_ascii_lowercase().replace([' ', '_'], "");
            let w = norm(wanted);
            if w.is_empty() {
                return None;
            }
            let mut hits = chrono_tz::TZ_VARIANTS
                .iter()
                .map(|tz| tz.name())
                .filter(|n| norm(n) == w || n.rsplit('/').next().is_some_and(|c| norm(c) == w));
            let first = hits.next()?;
            hits.next().is_none().then_some(first)
        });
    match close {
        Some(n) => format!("did you mean `{n}`? (IANA names are case-sensitive)"),
        None => "use an IANA name such as `Europe/Paris`, `America/New_York` or `UTC`".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn interval_slots_are_anchored() {
        let anchor = utc("2026-01-01T00:00:00Z");
        let every = Schedule::Every(Duration::from_secs(900));
        assert_eq!(
            every.next_after(anchor, utc("2025-12-31T00:00:00Z")),
            Some(anchor)
        );
        assert_eq!(
            every.next_after(anchor, anchor),
            Some(utc("2026-01-01T00:15:00Z"))
        );
        assert_eq!(
            every.next_after(anchor, utc("2026-01-01T00:14:59.999Z")),
            Some(utc("2026-01-01T00:15:00Z"))
        );
        assert_eq!(
            every.next_after(anchor, utc("2026-01-01T00:15:00Z")),
            Some(utc("2026-01-01T00:30:00Z"))
        );
        assert_eq!(
            every.next_after(anchor, utc("2026-03-01T10:07:00Z")),
            Some(utc("2026-03-01T10:15:00Z"))
        );
        let sub = Schedule::Every(Duration::from_micros(1500));
        assert_eq!(
            sub.next_after(anchor, anchor + chrono::TimeDelta::microseconds(1500)),
            Some(anchor + chrono::TimeDelta::microseconds(3000))
        );
        assert_eq!(
            Schedule::Every(Duration::ZERO).next_after(anchor, anchor),
            None
        );
    }

    #[test]
    fn once_is_strictly_after() {
        let t = utc("2026-05-01T12:00:00Z");
        let once = Schedule::Once(t);
        assert_eq!(once.next_after(t, utc("2026-05-01T11:59:59Z")), Some(t));
        assert_eq!(once.next_after(t, t), None);
        assert_eq!(once.next_after(t, utc("2027-01-01T00:00:00Z")), None);
    }

    #[test]
    fn display() {
        let c = CronSchedule::parse("0 0 * * *", Tz::Asia__Shanghai).unwrap();
        assert_eq!(
            Schedule::Cron(c).to_string(),
            "cron \"0 0 * * *\" (Asia/Shanghai)"
        );
        assert_eq!(
            Schedule::Every(Duration::from_secs(900)).to_string(),
            "every 15m"
        );
        assert_eq!(
            Schedule::Every(Duration::from_secs(5400)).to_string(),
            "every 1h30m"
        );
        assert_eq!(
            Schedule::Once(Utc.with_ymd_and_hms(2026, 3, 8, 7, 0, 0).unwrap()).to_string(),
            "once at 2026-03-08T07:00:00Z"
        );
    }

    #[test]
    fn timezones() {
        assert_eq!(parse_timezone("Europe/Paris").unwrap(), Tz::Europe__Paris);
        assert_eq!(parse_timezone(" UTC ").unwrap(), Tz::UTC);
        let e = parse_timezone("europe/paris").unwrap_err();
        assert_eq!(e, ScheduleError::UnknownTimezone("europe/paris".into()));
        assert!(
            e.to_string().contains("did you mean `Europe/Paris`?"),
            "{e}"
        );
        let e = parse_timezone("new york").unwrap_err().to_string();
        assert!(e.contains("did you mean `America/New_York`?"), "{e}");
        let e = parse_timezone("Mars/Olympus").unwrap_err().to_string();
        assert!(e.contains("IANA name such as `Europe/Paris`"), "{e}");
        assert!(e.starts_with("unknown time zone `Mars/Olympus`"), "{e}");
        let long = format!("Europe/{}", "x".repeat(10_000));
        let e = parse_timezone(&long).unwrap_err();
        assert_eq!(e, ScheduleError::UnknownTimezone(long));
        let e = e.to_string();
        assert!(e.chars().count() < 300, "{e}");
        assert!(e.starts_with("unknown time zone `Europe/xxx"), "{e}");
        assert!(e.contains("…` (10007 characters): use an IANA name"), "{e}");
    }

    #[test]
    fn quote_keeps_80_characters() {
        let exact = "a".repeat(80);
        assert_eq!(quote(&exact), format!("`{exact}`"));
        let long = "é".repeat(81);
        assert_eq!(
            quote(&long),
            format!("`{}…` (81 characters)", "é".repeat(79))
        );
        assert_eq!(quote(""), "``");
    }

    #[test]
    fn next_after_never_panics_at_the_edges() {
        let min = DateTime::<Utc>::MIN_UTC;
        let max = DateTime::<Utc>::MAX_UTC;
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let now = utc("2026-03-08T07:00:00Z");
        let instants = [
            min,
            min + chrono::TimeDelta::days(1),
            epoch,
            now,
            max - chrono::TimeDelta::days(1),
            max,
        ];
        let mut schedules = vec![
            Schedule::Every(Duration::from_nanos(1)),
            Schedule::Every(Duration::from_secs(1)),
            Schedule::Every(MAX_DURATION),
            Schedule::Every(Duration::from_secs(u64::MAX)),
            Schedule::Every(Duration::MAX),
            Schedule::Every(Duration::ZERO),
            Schedule::Once(min),
            Schedule::Once(max),
        ];
        for tz in [
            Tz::UTC,
            Tz::Pacific__Kiritimati,
            Tz::Pacific__Pago_Pago,
            Tz::America__New_York,
        ] {
            for expr in ["* * * * * *", "0 0 * * *", "0 0 29 2 *", "*/30 * * * *"] {
                for dst in DstPolicy::ALL {
                    let c = CronSchedule::parse(expr, tz).unwrap().with_dst(dst);
                    schedules.push(Schedule::Cron(c));
                }
            }
        }
        for s in &schedules {
            // Only interval slots depend on the anchor.
            let anchors: &[DateTime<Utc>] = match s {
                Schedule::Every(_) => &instants,
                _ => &[now],
            };
            for &anchor in anchors {
                for after in instants {
                    if let Some(next) = s.next_after(anchor, after) {
                        assert!(next > after, "{s} from {anchor} after {after}: {next}");
                    }
                }
            }
        }
        // The largest step from the earliest anchor lands past the last date: no slot.
        let huge = Schedule::Every(Duration::MAX);
        assert_eq!(huge.next_after(min, min), None);
        assert_eq!(
            Schedule::Every(MAX_DURATION).next_after(now, now),
            Some(now + chrono::TimeDelta::from_std(MAX_DURATION).unwrap())
        );
        assert_eq!(
            Schedule::Every(Duration::from_secs(1)).next_after(max, max),
            None
        );
    }
}
