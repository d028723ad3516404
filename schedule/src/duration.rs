//! The duration syntax shared by schedules, the config file and the CLI: `"500ms"`,
//! `"30s"`, `"10m"`, `"2h"`, `"1d"` and sums such as `"1h30m"`, plus the inverse,
//! [`format_duration`].
//!
//! Grammar: one or more `<digits><unit>` terms, units from largest to smallest and each at
//! most once, optionally separated by spaces; surrounding whitespace is ignored. Units:
//! `d` (86 400 s), `h`, `m`, `s`, `ms`, `us`, `ns`. A zero duration (`"0s"`) is accepted
//! because zero is a meaningful delay or grace period; [`parse_interval`] is the variant
//! for repeat intervals and rejects it. Nothing longer than [`MAX_DURATION`] (100 years)
//! is accepted: no schedule needs more, and adding a longer one to a date can overflow
//! the date types.

use std::time::Duration;

use crate::{ScheduleError, quote};

/// Units from largest to smallest, with their length in nanoseconds.
const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// The longest duration [`parse_duration`] accepts: 100 years of 365 days (`36500d`).
///
/// Delays computed elsewhere (a retry backoff, an interval times a count) can be checked
/// against it before they are added to a date.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// The reason given for a duration over [`MAX_DURATION`].
const TOO_LONG: &str = "too long; at most 100 years (36500d)";

const UNIT_HELP: &str = "use d, h, m, s or ms (e.g. `30s`, `10m`, `1h30m`)";

/// Parses `"500ms"`, `"30s"`, `"10m"`, `"2h"`, `"1d"` and sums such as `"1h30m"`.
///
/// Units must go from largest to smallest and appear at most once (`"1h30m"`, not
/// `"30m1h"`), so every duration has one spelling and [`format_duration`] is its inverse.
/// `"0s"` is accepted; use [`parse_interval`] where zero makes no sense. Durations longer
/// than [`MAX_DURATION`] (100 years) are rejected.
pub fn parse_duration(input: &str) -> Result<Duration, ScheduleError> {
    let bad = |reason: String| ScheduleError::InvalidDuration {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(bad(format!("the duration is empty; {UNIT_HELP}")));
    }
    let mut total: u128 = 0;
    // Index in UNITS of the last unit seen; the next one must be strictly smaller.
    let mut last_unit: Option<usize> = None;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            let c = rest.chars().next().unwrap_or(' ');
            return Err(bad(if c == '-' {
                "negative durations are not allowed".to_string()
            } else {
                format!("expected a number at {}; {UNIT_HELP}", quote(rest))
            }));
        }
        let number = &rest[..digits];
        rest = &rest[digits..];
        if rest.starts_with(['.', ',']) {
            return Err(bad(
                "fractions are not supported; combine units instead, e.g. `1h30m` for 1.5h"
                    .to_string(),
            ));
        }
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic() && c != 'µ')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        if unit.is_empty() {
            return Err(bad(format!("{} has no unit; {UNIT_HELP}", quote(number))));
        }
        let Some(index) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(bad(format!("unknown unit {}; {UNIT_HELP}", quote(unit))));
        };
        if let Some(last) = last_unit
            && index <= last
        {
            return Err(bad(format!(
                "unit `{unit}` after `{}`: write units from largest to smallest, each once \
                     (e.g. `1h30m`)",
                UNITS[last].0
            )));
        }
        last_unit = Some(index);
        // A number too big for u128 is far over the limit too.
        let n: u128 = number.parse().map_err(|_| bad(TOO_LONG.to_string()))?;
        total = n
            .checked_mul(UNITS[index].1)
            .and_then(|v| total.checked_add(v))
            .filter(|&t| t <= MAX_DURATION.as_nanos())
            .ok_or_else(|| bad(TOO_LONG.to_string()))?;
    }
    // At most MAX_DURATION, so the seconds fit in u64 and the remainder is below 10^9.
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Like [`parse_duration`], but rejects a zero duration: for `every = "..."` intervals,
/// where zero would mean firing continuously.
pub fn parse_interval(input: &str) -> Result<Duration, ScheduleError> {
    let d = parse_duration(input)?;
    if d.is_zero() {
        return Err(ScheduleError::InvalidDuration {
            input: input.to_string(),
            reason: "an interval must be longer than zero; use at least `1ms`".to_string(),
        });
    }
    Ok(d)
}

/// Formats a duration in the syntax [`parse_duration`] reads, largest units first:
/// `5400s` → `"1h30m"`, `1.5s` → `"1s500ms"`, zero → `"0s"`.
pub fn format_duration(d: Duration) -> String {
    let mut rest = d.as_nanos();
    if rest == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, nanos) in UNITS {
        let n = rest / nanos;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            rest -= n * nanos;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(input: &str) -> String {
        match parse_duration(input) {
            Err(ScheduleError::InvalidDuration { reason, .. }) => reason,
            other => panic!("expected an error for {input:?}, got {other:?}"),
        }
    }

    #[test]
    fn parses_single_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
    }

    #[test]
    fn parses_sums_and_whitespace() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("  1h30m \n").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("1d2h3m4s5ms").unwrap(),
            Duration::from_millis(93_784_005)
        );
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn zero_is_a_duration_but_not_an_interval() {
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_interval("0s").is_err());
        assert_eq!(parse_interval("15m").unwrap(), Duration::from_secs(900));
    }

    #[test]
    fn rejects_bad_input_with_reasons() {
        assert!(reason("").contains("empty"));
        assert!(reason("   ").contains("empty"));
        assert!(reason("30").contains("no unit"));
        assert!(reason("10x").contains("unknown unit `x`"));
        assert!(reason("10M").contains("unknown unit `M`"));
        assert!(reason("h").contains("expected a number"));
        assert!(reason("-5s").contains("negative"));
        assert!(reason("1.5h").contains("fractions"));
        assert!(reason("30m1h").contains("largest to smallest"));
        assert!(reason("1h1h").contains("largest to smallest"));
        assert_eq!(
            reason("99999999999999999999999999999999999999999d"),
            "too long; at most 100 years (36500d)"
        );
        assert_eq!(
            reason("999999999999999999999d"),
            "too long; at most 100 years (36500d)"
        );
        let e = parse_duration("10x").unwrap_err().to_string();
        assert!(e.starts_with("invalid duration `10x`: unknown unit"), "{e}");
    }

    #[test]
    fn at_most_100_years() {
        assert_eq!(
            parse_duration("100000000d").unwrap_err().to_string(),
            "invalid duration `100000000d`: too long; at most 100 years (36500d)"
        );
        assert_eq!(parse_duration("36500d").unwrap(), MAX_DURATION);
        assert_eq!(parse_duration("876000h").unwrap(), MAX_DURATION);
        assert_eq!(MAX_DURATION.as_secs(), 100 * 365 * 86_400);
        for over in [
            "36500d1ns",
            "36501d",
            "876001h",
            "3153600000001ms",
            "36499d24h1s",
        ] {
            assert_eq!(
                reason(over),
                "too long; at most 100 years (36500d)",
                "{over}"
            );
        }
        assert!(parse_interval("36501d").is_err());
        assert_eq!(format_duration(MAX_DURATION), "36500d");
        let almost = MAX_DURATION - Duration::from_nanos(1);
        assert_eq!(parse_duration(&format_duration(almost)).unwrap(), almost);
        // The longest duration can be added to any date kairos will see.
        let far = chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z").unwrap();
        assert!(
            far.checked_add_signed(chrono::TimeDelta::from_std(MAX_DURATION).unwrap())
                .is_some()
        );
    }

    #[test]
    fn long_input_is_shortened_in_messages() {
        for input in [
            format!("{}s", "1".repeat(10_000)),
            "x".repeat(10_000),
            format!("1{}", "y".repeat(10_000)),
            "1".repeat(10_000),
        ] {
            let msg = parse_duration(&input).unwrap_err().to_string();
            assert!(msg.chars().count() < 400, "{msg}");
            assert!(
                msg.contains("…` (10001 characters)") || msg.contains("…` (10000 characters)"),
                "{msg}"
            );
        }
        let msg = parse_duration(&"x".repeat(10_000)).unwrap_err().to_string();
        assert!(msg.contains("expected a number at `xxx"), "{msg}");
    }

    #[test]
    fn format_is_the_inverse() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(900)), "15m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::from_secs(86_400 * 2 + 1)), "2d1s");
        for s in ["1h30m", "15m", "1d", "500ms", "1d2h3m4s5ms6us7ns", "0s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
        for ns in [1u64, 999, 1_000_001, 59_999_999_999, 3_600_000_000_123] {
            let d = Duration::from_nanos(ns);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
