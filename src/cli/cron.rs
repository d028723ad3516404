//! `kairos cron next`: the next fire times of an expression, without a database.

use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::output::{CliError, Out};
use super::parse_time;
use crate::schedule::{CronSchedule, DstPolicy, parse_timezone};

#[derive(Debug, Subcommand)]
pub(super) enum CronCmd {
    /// Print the next fire times, one RFC 3339 timestamp per line (a JSON array with
    /// --json), strictly after --from.
    Next {
        /// Cron expression (5 fields, 6 with seconds, or @daily ...).
        expr: String,
        /// IANA time zone the expression is read in (and the times are printed in).
        #[arg(long, alias = "timezone", default_value = "UTC")]
        tz: String,
        /// Daylight-saving rule: debian (default), skip or both.
        #[arg(long, default_value = "debian")]
        dst: DstPolicy,
        /// Times strictly after this RFC 3339 instant (default now).
        #[arg(long)]
        from: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        count: u32,
    },
}

pub(super) fn run(cmd: &CronCmd, now: DateTime<Utc>, out: &mut Out<'_>) -> Result<(), CliError> {
    let CronCmd::Next {
        expr,
        tz,
        dst,
        from,
        count,
    } = cmd;
    let tz = parse_timezone(tz).map_err(|e| CliError::new("invalid_input", e.to_string()))?;
    let cron = CronSchedule::parse(expr, tz)
        .map_err(|e| CliError::new("invalid_cron", e.to_string()))?
        .with_dst(*dst);
    let mut t = match from {
        Some(f) => parse_time(f, "--from")?,
        None => now,
    };
    let mut times = Vec::new();
    for _ in 0..*count {
        match cron.next_after(t) {
            Some(n) => {
                times.push(
                    n.with_timezone(&tz)
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                );
                t = n;
            }
            None => break,
        }
    }
    out.print(&times, || {
        if times.is_empty() {
            "(none: the expression has no fire time after that)".to_string()
        } else {
            times.join("\n")
        }
    })
}
