//! Schedules for kairos: crontab-true cron expressions evaluated in an IANA time zone,
//! fixed intervals and one-off times, plus the duration syntax (`"30m"`, `"1h30m"`).
//!
//! This crate is shared by the runtime and by `kairos-macros`, so an expression the
//! macro accepts at compile time is exactly one the scheduler can run.
//!
//! PLACEHOLDER: the real implementation replaces this file.

use std::time::Duration;

use chrono::{DateTime, Utc};
pub use chrono_tz::Tz;

/// Why a schedule, zone or duration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("invalid cron expression `{expr}`: {reason}")]
    InvalidCron {
        /// The expression as given.
        expr: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The time zone is not an IANA zone name.
    #[error("unknown time zone `{0}`: use an IANA name such as `Europe/Paris` or `UTC`")]
    UnknownTimezone(String),
    /// The duration does not parse.
    #[error("invalid duration `{input}`: {reason}")]
    InvalidDuration {
        /// The text as given.
        input: String,
        /// What is wrong.
        reason: String,
    },
}

/// A parsed cron expression bound to a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: String,
    tz: Tz,
    cron: croner::Cron,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz == other.tz
    }
}

impl CronSchedule {
    /// Parses `expr` (5 or 6 fields, or `@hourly` ...) to be evaluated in `tz`.
    pub fn parse(expr: &str, tz: Tz) -> Result<Self, ScheduleError> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::InvalidCron {
                expr: expr.to_string(),
                reason: e.to_string(),
            })?;
        Ok(CronSchedule {
            expr: expr.to_string(),
            tz,
            cron,
        })
    }
    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }
    /// The zone it is evaluated in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }
    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// When a job fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// On each match of a cron expression.
    Cron(CronSchedule),
    /// Every fixed interval, counted from the job's anchor (its first slot).
    Every(Duration),
    /// Once, at this instant.
    Once(DateTime<Utc>),
}

impl Schedule {
    /// The first slot strictly after `after`. `anchor` is the first slot of an interval
    /// job (slots are `anchor + k * interval`); cron and one-off schedules ignore it.
    pub fn next_after(&self, anchor: DateTime<Utc>, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(c) => c.next_after(after),
            Schedule::Every(d) => {
                let step = chrono::Duration::from_std(*d)
                    .ok()?
                    .num_milliseconds()
                    .max(1);
                let diff = (after - anchor).num_milliseconds();
                let k = if diff < 0 { 0 } else { diff / step + 1 };
                Some(anchor + chrono::Duration::milliseconds(k * step))
            }
            Schedule::Once(t) => (*t > after).then_some(*t),
        }
    }
}

/// Parses an IANA zone name.
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownTimezone(name.to_string()))
}

/// Parses `"500ms"`, `"30s"`, `"10m"`, `"2h"`, `"1d"` and sums such as `"1h30m"`.
pub fn parse_duration(input: &str) -> Result<Duration, ScheduleError> {
    let bad = |reason: &str| ScheduleError::InvalidDuration {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(bad(
            "empty; write a number and a unit such as `30s`, `10m` or `2h`",
        ));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(bad("expected a number; write e.g. `30s`, `10m`, `1h30m`"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| bad("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86400),
            "" => return Err(bad("missing unit; use ms, s, m, h or d (e.g. `30s`)")),
            _ => return Err(bad("unknown unit; use ms, s, m, h or d")),
        };
        total += d;
    }
    Ok(total)
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Cron(c) => write!(f, "cron \"{}\" ({})", c.expr(), c.timezone().name()),
            Schedule::Every(d) => write!(f, "every {}s", d.as_secs()),
            Schedule::Once(t) => write!(f, "once at {}", t.to_rfc3339()),
        }
    }
}

/// Formats a duration in the syntax `parse_duration` reads.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s % 60 == 0 {
        return format!("{}m", s / 60);
    }
    format!("{s}s")
}
