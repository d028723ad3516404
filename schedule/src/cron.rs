//! Cron expressions: parsing with field-naming error messages, and the search for the next
//! fire time in the job's time zone with Debian cron's day and DST rules.
//!
//! Parsing is ours (so errors can name the field and say how to fix it); the normalised,
//! purely numeric pattern is then handed to `croner`, which matches it against wall-clock
//! (naive local) times. Mapping wall-clock matches to UTC instants, including daylight
//! saving gaps and overlaps, is done here rather than by croner, so the rules are
//! exactly these:
//!
//! * day-of-week 0 and 7 are Sunday;
//! * if day-of-month or day-of-week *starts with* `*` (`*`, `*/2`), a day must match both
//!   (so only the other one restricts); otherwise it matches if either matches (Vixie's
//!   `DOM_STAR`/`DOW_STAR` rule);
//! * an entry is *wildcard* when its second, minute or hour field starts with `*`, and
//!   *fixed-time* otherwise. This is Debian cron's rule (its `MIN_STAR`/`HR_STAR` flags
//!   look at the first character of the field only), extended to the seconds field, so
//!   ranges, lists and steps that start with a number are fixed-time: `30 2 * * *`,
//!   `0 1-3 * * *`, `30 2,14 * * *`, `0 1-5/2 * * *`, `@daily`, and in 6-field form
//!   `0 30 2 * * *`; while `*/15 * * * *`, `0 * * * *` (`@hourly`), `*/20 2 * * *` and
//!   `*/10 30 2 * * *` (every 10 seconds of 02:30) are wildcard;
//! * with the default [`DstPolicy::Debian`], a fixed-time entry whose times fall in a
//!   spring-forward gap runs once at the first instant after the gap, and one repeated
//!   by a fall-back runs once, on the first pass; a wildcard entry fires at every instant
//!   whose local wall-clock time matches: on both passes of a repeated hour, and never
//!   inside a gap;
//! * [`DstPolicy::Skip`] treats every entry alike: nothing runs for a time inside a gap,
//!   and a repeated time runs on the first pass only;
//! * [`DstPolicy::Both`] treats every entry alike too: a gap's matching times run once at
//!   the first instant after it, and repeated times run on both passes.
//!
//! "Once at the first instant after the gap" holds however many of an entry's times the
//! gap swallowed (`0,30 2 * * *` in a one-hour gap), and also when the entry matches that
//! first instant itself (`0 2,3 * * *` when 02:00 jumps to 03:00): a schedule is a
//! sequence of instants, and an instant fires once. Debian's own daemon differs here in
//! a way no instant sequence can express: its "DST begins" branch in `cron.c` calls
//! `find_jobs(minute, doWild = FALSE, doNonWild = TRUE)` for each skipped minute and for
//! the current one, running the job queue in between, so such an entry runs once per
//! matching minute, back to back.
//!
//! The search assumes a zone never turns its clock back by more than 3 hours at once
//! (true of every IANA zone in use; the largest modern shifts are 2 hours).

use std::fmt;

use chrono::{DateTime, Duration as TimeDelta, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};

use crate::{DstPolicy, ScheduleError, quote};

/// The cron fields, in the order of a 6-field expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Field {
    const ALL: [Field; 6] = [
        Field::Second,
        Field::Minute,
        Field::Hour,
        Field::DayOfMonth,
        Field::Month,
        Field::DayOfWeek,
    ];

    fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }

    fn range(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }

    /// How many values one cycle of the field has, and what the cycle is: a step restarts
    /// with every cycle.
    fn cycle(self) -> (u32, &'static str) {
        match self {
            Field::Second => (60, "minute"),
            Field::Minute => (60, "hour"),
            Field::Hour => (24, "day"),
            Field::DayOfMonth => (31, "month"),
            Field::Month => (12, "year"),
            Field::DayOfWeek => (7, "week"),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Field::Month => &[
                "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
            ],
            Field::DayOfWeek => &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
            _ => &[],
        }
    }

    /// What a value of this field may look like, for error messages.
    fn value_help(self) -> String {
        let (lo, hi) = self.range();
        match self {
            Field::Month => format!("a number {lo}-{hi} or a month name (JAN-DEC)"),
            Field::DayOfWeek => {
                format!("a number {lo}-{hi} (0 and 7 are Sunday) or a day name (SUN-SAT)")
            }
            _ => format!("a number {lo}-{hi}"),
        }
    }
}

/// The expressions `@name` stands for.
const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const FIELDS_HELP: &str =
    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first";

/// A parsed cron expression bound to a time zone.
///
/// Accepts 5-field crontab lines (`m h dom mon dow`), 6 fields with seconds first, the
/// macros `@hourly @daily @midnight @weekly @monthly @yearly @annually`, month and day
/// names (`JAN`, `MON-FRI`), ranges, steps and lists, and the extensions `L` (last day of
/// the month), `LW` (last weekday of the month), `15W` (weekday nearest the 15th),
/// `5L` (last Friday) and `FRI#2` (second Friday). See the module docs for the day and
/// daylight saving rules.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: String,
    tz: Tz,
    /// Boxed: the matcher is large and `Schedule` is passed around by value.
    cron: std::sync::Arc<croner::Cron>,
    /// Debian's fixed-time entry: no second, minute or hour field starts with `*`.
    fixed_time: bool,
    dst: DstPolicy,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz == other.tz && self.dst == other.dst
    }
}

impl Eq for CronSchedule {}

impl fmt::Display for CronSchedule {
    /// `cron "0 0 * * *" (Asia/Shanghai)`, with ` dst=skip` or ` dst=both` appended when
    /// the policy is not the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cron \"{}\" ({})", self.expr, self.tz.name())?;
        if self.dst != DstPolicy::Debian {
            write!(f, " dst={}", self.dst)?;
        }
        Ok(())
    }
}

impl CronSchedule {
    /// Parses `expr` (5 or 6 fields, or `@hourly` ...) to be evaluated in `tz`.
    ///
    /// The error's `reason` names the offending field and says how to fix it, e.g.
    /// ``field 2 (hour) `25` is out of range 0-23``.
    pub fn parse(expr: &str, tz: Tz) -> Result<Self, ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidCron {
            expr: expr.to_string(),
            reason,
        };
        let normalized = normalize(expr).map_err(invalid)?;
        let [sec, min, hour, dom, mon, dow] = &normalized.fields;
        // Vixie cron: a field whose first character is `*` is "unrestricted", and then a
        // day must match both fields; croner only treats exactly `*` that way, so ask it
        // for AND semantics explicitly (equivalent to its own rule when a field is `*`).
        let dom_and_dow = dom.starts_with('*') || dow.starts_with('*');
        let pattern = format!("{sec} {min} {hour} {dom} {mon} {dow}");
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .dom_and_dow(dom_and_dow)
            .build()
            .parse(&pattern)
            .map_err(|e| invalid(format!("not accepted by the cron engine: {e}")))?;
        // Day rules can combine into a date that never comes (`0 0 */10 2 MON#5`: the
        // fifth Monday of February is the 29th). Dates repeat within 400 years, so a
        // match-free search (croner gives up at year 5000) means never.
        let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("valid date");
        if cron.find_next_occurrence(&epoch, true).is_err() {
            return Err(invalid(
                "the day-of-month, month and day-of-week fields never match together, so the \
                 job would never run"
                    .to_string(),
            ));
        }
        // Debian's `MIN_STAR`/`HR_STAR`: the first character decides, before the field is
        // read, so `*/5` is wildcard and `0-59` is not. Normalising leaves a leading `*`
        // where the user wrote one (only day fields rewrite `?`).
        let fixed_time = ![sec, min, hour].iter().any(|f| f.starts_with('*'));
        Ok(CronSchedule {
            expr: expr.to_string(),
            tz,
            cron: std::sync::Arc::new(cron),
            fixed_time,
            dst: DstPolicy::Debian,
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

    /// The same expression evaluated in another zone (its DST policy is kept).
    pub fn with_timezone(mut self, tz: Tz) -> Self {
        self.tz = tz;
        self
    }

    /// The same schedule with another daylight saving policy (the default is
    /// [`DstPolicy::Debian`]).
    pub fn with_dst(mut self, dst: DstPolicy) -> Self {
        self.dst = dst;
        self
    }

    /// How it treats times that a daylight saving change skips or repeats.
    pub fn dst(&self) -> DstPolicy {
        self.dst
    }

    /// Whether this is a *fixed-time* entry by Debian cron's rule: none of its second,
    /// minute and hour fields starts with `*`. Ranges, lists and steps count as fixed
    /// when they start with a number (`0 1-3 * * *`, `30 2,14 * * *`, `0 1-5/2 * * *`);
    /// `*/20 2 * * *` and `0 * * * *` are wildcard. In the 6-field form the seconds
    /// field counts too: `*/10 30 2 * * *` (every 10 s of 02:30) is wildcard,
    /// `0 30 2 * * *` is fixed. Under [`DstPolicy::Debian`] a fixed-time entry runs
    /// after a spring-forward gap that swallowed its time and once in a repeated hour;
    /// the other policies treat every entry alike.
    pub fn is_fixed_time(&self) -> bool {
        self.fixed_time
    }

    /// Whether wall-clock matches inside a spring-forward gap run at the gap's end.
    fn runs_gap_times(&self) -> bool {
        match self.dst {
            DstPolicy::Debian => self.fixed_time,
            DstPolicy::Skip => false,
            DstPolicy::Both => true,
        }
    }

    /// Whether wall-clock matches repeated by a fall-back run on the second pass too.
    fn runs_second_pass(&self) -> bool {
        match self.dst {
            DstPolicy::Debian => !self.fixed_time,
            DstPolicy::Skip => false,
            DstPolicy::Both => true,
        }
    }

    /// The first fire time strictly after `after`, or `None` if there is none (before the
    /// year 5000, or within the range of dates chrono represents).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let ahead = self.next_in_wall_order(after);
        let behind = if self.runs_second_pass() {
            self.second_pass_behind(after)
        } else {
            None
        };
        match (ahead, behind) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The first fire time after `after` among wall-clock times later than `after`'s.
    ///
    /// Wall-clock matches are taken in order and mapped to instants; the first one that
    /// yields an instant after `after` yields the earliest (first-pass instants grow with
    /// the wall clock, a gap's times all map to its end, which is the instant of the
    /// first wall-clock time after them, and a second-pass instant is only returned when
    /// `after` is itself in the second pass, where every first-pass instant is already
    /// past).
    fn next_in_wall_order(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local_after = self.local(after)?;
        let mut cursor =
            truncate_to_second(local_after).checked_add_signed(TimeDelta::seconds(1))?;
        loop {
            let wall = self.cron.find_next_occurrence(&cursor, true).ok()?;
            match self.tz.from_local_datetime(&wall) {
                LocalResult::Single(t) => {
                    let t = t.with_timezone(&Utc);
                    if t > after {
                        return Some(t);
                    }
                }
                LocalResult::Ambiguous(first, second) => {
                    let (first, second) = (first.with_timezone(&Utc), second.with_timezone(&Utc));
                    if first > after {
                        return Some(first);
                    }
                    if self.runs_second_pass() && second > after {
                        return Some(second);
                    }
                }
                LocalResult::None => {
                    if let Some(end) = self.end_of_gap(wall) {
                        if self.runs_gap_times() && end > after {
                            // Once at the first instant after the gap, however many of the
                            // gap's times match and whether or not `end`'s own time does:
                            // the next search starts after `end`, past the whole gap.
                            return Some(end);
                        }
                        // Nothing (more) runs for this gap: resume at its end.
                        cursor = self.local(end)?;
                        continue;
                    }
                }
            }
            cursor = wall.checked_add_signed(TimeDelta::seconds(1))?;
        }
    }

    /// `t`'s wall-clock time in the zone, or `None` past the last date chrono represents
    /// (`DateTime::naive_local` panics there).
    fn local(&self, t: DateTime<Utc>) -> Option<NaiveDateTime> {
        let offset = self.tz.offset_from_utc_datetime(&t.naive_utc()).fix();
        t.naive_utc().checked_add_offset(offset)
    }

    /// For entries that fire on both passes of a repeated hour: when the clock goes back
    /// within the next 3 hours and the repeated wall-clock range starts at or before
    /// `after`'s wall-clock time, the second pass of those times is still ahead. Returns
    /// its first match, if any.
    fn second_pass_behind(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset = |t: DateTime<Utc>| -> i64 {
            i64::from(
                self.tz
                    .offset_from_utc_datetime(&t.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        };
        let seconds = |t: DateTime<Utc>, k: i64| t.checked_add_signed(TimeDelta::seconds(k));
        let start =
            DateTime::<Utc>::from_naive_utc_and_offset(truncate_to_second(after.naive_utc()), Utc);
        let window = 3 * 3600;
        let (old, new) = (offset(start), offset(seconds(start, window)?));
        if new >= old {
            return None;
        }
        // Bisect to the transition: the first second with the new offset.
        let (mut lo, mut hi) = (0i64, window);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if offset(seconds(start, mid)?) == old {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let transition = seconds(start, hi)?.naive_utc();
        let fold_start = transition.checked_add_signed(TimeDelta::seconds(new))?;
        let fold_end = transition.checked_add_signed(TimeDelta::seconds(old))?;
        let local_after = after
            .naive_utc()
            .checked_add_signed(TimeDelta::seconds(old))?;
        if fold_start > local_after {
            // The whole repeated range is still ahead on the wall clock.
            return None;
        }
        let wall = self.cron.find_next_occurrence(&fold_start, true).ok()?;
        if wall > local_after || wall >= fold_end {
            // Later wall-clock times are found by `next_in_wall_order`.
            return None;
        }
        self.tz
            .from_local_datetime(&wall)
            .latest()
            .map(|t| t.with_timezone(&Utc))
            .filter(|&t| t > after)
    }

    /// The first instant after the gap containing the (non-existent) wall-clock `wall`.
    fn end_of_gap(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        let exists = |k: i64| {
            let t = wall.checked_add_signed(TimeDelta::seconds(k))?;
            match self.tz.from_local_datetime(&t) {
                LocalResult::Single(x) | LocalResult::Ambiguous(x, _) => Some(x),
                LocalResult::None => None,
            }
        };
        // Gallop to a wall-clock time that exists, then bisect back to the gap's end.
        let mut missing = 0i64;
        let mut present = 1i64;
        while exists(present).is_none() {
            missing = present;
            present *= 2;
            if present > 3 * 86_400 {
                return None;
            }
        }
        while present - missing > 1 {
            let mid = missing + (present - missing) / 2;
            if exists(mid).is_some() {
                present = mid;
            } else {
                missing = mid;
            }
        }
        exists(present).map(|t| t.with_timezone(&Utc))
    }
}

fn truncate_to_second(t: NaiveDateTime) -> NaiveDateTime {
    chrono::Timelike::with_nanosecond(&t, 0).unwrap_or(t)
}

/// An expression reduced to six numeric fields croner reads unambiguously.
struct Normalized {
    fields: [String; 6],
}

/// Checks `expr` field by field and rewrites it as six numeric fields.
fn normalize(expr: &str) -> Result<Normalized, String> {
    let trimmed = expr.trim();
    if trimmed.is_empty() {
        return Err(format!("the expression is empty; {FIELDS_HELP}"));
    }
    let expanded;
    let text = if trimmed.starts_with('@') {
        let lower = trimmed.to_ascii_lowercase();
        if lower == "@reboot" {
            return Err(
                "`@reboot` is not supported: it means \"when the cron daemon starts\", \
                        which a persistent scheduler has no equivalent for; run the job from \
                        your application's start-up or schedule it once instead"
                    .to_string(),
            );
        }
        match MACROS.iter().find(|(name, _)| *name == lower) {
            Some((_, e)) => {
                expanded = e.to_string();
                expanded.as_str()
            }
            None => {
                let names: Vec<&str> = MACROS.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown macro {}; use one of {}",
                    quote(trimmed),
                    names.join(" ")
                ));
            }
        }
    } else {
        trimmed
    };
    let parts: Vec<&str> = text.split_whitespace().collect();
    let (with_seconds, fields): (bool, [&str; 6]) = match parts.len() {
        5 => (
            false,
            ["0", parts[0], parts[1], parts[2], parts[3], parts[4]],
        ),
        6 => (
            true,
            [parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]],
        ),
        7 => {
            return Err(format!(
                "{FIELDS_HELP}, found 7; a year field is not supported (it is not crontab \
                 syntax): remove it"
            ));
        }
        n => return Err(format!("{FIELDS_HELP}, found {n}")),
    };
    let mut out: [String; 6] = Default::default();
    for (i, field) in Field::ALL.into_iter().enumerate() {
        // Position as the user wrote it (1-based; no seconds field in 5-field form).
        let position = if with_seconds { i + 1 } else { i };
        out[i] = normalize_field(fields[i], field)
            .map_err(|msg| format!("field {position} ({}) {msg}", field.name()))?;
    }
    check_day_exists(&out, with_seconds)?;
    Ok(Normalized { fields: out })
}

/// Rejects a day-of-month that no selected month has, when day-of-week cannot rescue it
/// (it starts with `*`): such a job would never run (`0 0 30 2 *`).
fn check_day_exists(fields: &[String; 6], with_seconds: bool) -> Result<(), String> {
    let (dom, month, dow) = (&fields[3], &fields[4], &fields[5]);
    if !dow.starts_with('*') || dom.starts_with('*') {
        return Ok(());
    }
    let mut first_day = u32::MAX;
    for item in dom.split(',') {
        if item.starts_with('L') {
            return Ok(());
        }
        let item = item.trim_end_matches('W');
        let Some(days) = expand(item, Field::DayOfMonth) else {
            return Ok(());
        };
        first_day = first_day.min(days.into_iter().min().unwrap_or(u32::MAX));
    }
    let Some(months) = expand_list(month, Field::Month) else {
        return Ok(());
    };
    const MAX_DAYS: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if months.iter().all(|&m| first_day > MAX_DAYS[m as usize]) {
        let (d, m) = if with_seconds { (4, 5) } else { (3, 4) };
        return Err(format!(
            "field {d} (day-of-month) never occurs in the months of field {m} (month), so \
             the job would never run; pick days that exist in those months (or `L` for the \
             last day)"
        ));
    }
    Ok(())
}

/// Expands a numeric list such as `1-5,10,*/3` (already normalised).
fn expand_list(field: &str, kind: Field) -> Option<Vec<u32>> {
    let mut all = Vec::new();
    for item in field.split(',') {
        all.extend(expand(item, kind)?);
    }
    Some(all)
}

/// Expands one normalised numeric item (`*`, `n`, `a-b`, with an optional `/step`).
fn expand(item: &str, kind: Field) -> Option<Vec<u32>> {
    let (base, step) = match item.split_once('/') {
        Some((b, s)) => (b, s.parse::<u32>().ok()?),
        None => (item, 1),
    };
    let (lo, hi) = if base == "*" {
        kind.range()
    } else if let Some((a, b)) = base.split_once('-') {
        (a.parse().ok()?, b.parse().ok()?)
    } else {
        let v = base.parse().ok()?;
        (v, v)
    };
    Some((lo..=hi).step_by(step as usize).collect())
}

/// Checks one field and rewrites names and `?` into numbers and `*`.
fn normalize_field(raw: &str, field: Field) -> Result<String, String> {
    let shown = quote(raw);
    let upper = raw.to_ascii_uppercase();
    let day_field = matches!(field, Field::DayOfMonth | Field::DayOfWeek);
    if upper == "?" && day_field {
        return Ok("*".to_string());
    }
    if field == Field::DayOfMonth {
        let items: Vec<&str> = upper.split(',').collect();
        if items.contains(&"L") && items.contains(&"LW") {
            // croner would read `L,LW` as `LW` alone.
            return Err(format!(
                "{shown} combines `L` and `LW`; use one of them (or two entries)"
            ));
        }
    }
    let mut items = Vec::new();
    for item in upper.split(',') {
        if item.is_empty() {
            return Err(format!(
                "{shown} has an empty list item; remove the stray comma"
            ));
        }
        items.push(normalize_item(item, field)?);
    }
    Ok(items.join(","))
}

fn normalize_item(item: &str, field: Field) -> Result<String, String> {
    let shown = quote(item);
    // Day-of-month extensions.
    if field == Field::DayOfMonth {
        if item == "L" || item == "LW" {
            return Ok(item.to_string());
        }
        if let Some(day) = item.strip_suffix('W') {
            if day.contains(['-', '/', '*']) {
                return Err(format!(
                    "{shown}: `W` takes a single day (e.g. `15W`, the weekday nearest the 15th)"
                ));
            }
            let d = value(day, field, false)?;
            return Ok(format!("{d}W"));
        }
    }
    // Day-of-week extensions.
    if field == Field::DayOfWeek {
        if item == "L" {
            return Err(
                "`L` alone is not valid here; write e.g. `5L` or `FRIL` for the last \
                        Friday of the month, or put `L` in day-of-month for the last day"
                    .to_string(),
            );
        }
        if let Some((day, nth)) = item.split_once('#') {
            if day.contains(['-', '/', '*']) {
                return Err(format!("{shown}: `#` takes a single day (e.g. `FRI#2`)"));
            }
            let d = value(day, field, false)?;
            let k: u32 = nth.parse().map_err(|_| {
                format!("{shown}: the occurrence after `#` must be 1-5 (e.g. `FRI#2`)")
            })?;
            if !(1..=5).contains(&k) {
                return Err(format!(
                    "{shown}: the occurrence after `#` must be 1-5 (e.g. `FRI#2`)"
                ));
            }
            return Ok(format!("{d}#{k}"));
        }
        if let Some(day) = item.strip_suffix('L') {
            if day.contains(['-', '/', '*']) {
                return Err(format!(
                    "{shown}: `L` takes a single day (e.g. `5L`, last Friday)"
                ));
            }
            let d = value(day, field, false)?;
            return Ok(format!("{d}L"));
        }
    }
    if item.contains('#') {
        return Err(format!(
            "{shown}: `#` is only allowed in day-of-week (e.g. `FRI#2`)"
        ));
    }
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => {
            let n: u32 = step.parse().map_err(|_| {
                format!("{shown}: the step after `/` must be a positive number (e.g. `*/15`)")
            })?;
            if n == 0 {
                return Err(format!("{shown}: the step must be at least 1"));
            }
            // Steps restart with each cycle of the field (`*/45` in minutes is :00 and :45
            // every hour), so a step longer than the cycle picks only the first value and
            // does not mean what it says (`*/90` is hourly, not every 90 minutes).
            // Vixie/Debian cron's `get_range` and cronsim only reject a zero step; cronie
            // accepts any step but warns when it exceeds the span it steps over (`*/60`:
            // "Step size 60 higher than possible maximum of 59"). We reject what is
            // certainly a mistake, a step longer than the field's cycle, and keep a step
            // of exactly one cycle (`*/60`, `0 */24`, `*/7` in day-of-week): it selects
            // the first value only, once per hour, day or week, which is what it is
            // written to say.
            let (cycle, unit) = field.cycle();
            if n > cycle {
                let (lo, hi) = field.range();
                return Err(format!(
                    "{shown}: the step {n} is larger than the field's range {lo}-{hi}; steps \
                     restart every {unit}, so use at most {cycle}"
                ));
            }
            (base, Some(n))
        }
        None => (item, None),
    };
    let base = if base == "*" {
        "*".to_string()
    } else if let Some((a, b)) = base.split_once('-') {
        let lo = value(a, field, false)?;
        let hi = value(b, field, true)?;
        if lo > hi {
            return Err(format!(
                "{shown}: the range {} is reversed; write the smaller value first",
                quote(&format!("{a}-{b}"))
            ));
        }
        format!("{lo}-{hi}")
    } else {
        let v = value(base, field, false)?;
        if step.is_some() {
            let (_, hi) = field.range();
            let hi = if field == Field::DayOfWeek { 6 } else { hi };
            return Err(format!(
                "{shown}: a step needs a range; write `{v}-{hi}/{}` or `*/{}`",
                step.unwrap_or(1),
                step.unwrap_or(1)
            ));
        }
        v.to_string()
    };
    Ok(match step {
        Some(n) => format!("{base}/{n}"),
        None => base,
    })
}

/// Parses one value of `field`: a number in range or, for months and days, a name.
/// `SUN` at the end of a range is 7, so `FRI-SUN` works.
fn value(text: &str, field: Field, range_end: bool) -> Result<u32, String> {
    let shown = quote(text);
    let (lo, hi) = field.range();
    if text.is_empty() {
        return Err(format!(
            "is missing a value; expected {}",
            field.value_help()
        ));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            _ => Err(format!("{shown} is out of range {lo}-{hi}")),
        };
    }
    if let Some(i) = field.names().iter().position(|n| *n == text) {
        let i = i as u32;
        return Ok(match field {
            Field::Month => i + 1,
            _ if range_end && i == 0 => 7,
            _ => i,
        });
    }
    let hint = match field {
        Field::Month | Field::DayOfWeek => String::new(),
        _ if text.contains('L') || text.contains('W') => {
            "; `L` and `W` are only allowed in day-of-month, `L` and `#` in day-of-week".to_string()
        }
        _ => String::new(),
    };
    Err(format!(
        "{shown} is not valid; expected {}{hint}",
        field.value_help()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .with_timezone(&Utc)
    }

    /// The next `n` fire times of `expr` in `tz` strictly after `from`, as RFC3339 UTC.
    fn next_n(expr: &str, tz: Tz, from: &str, n: usize) -> Vec<String> {
        let c = CronSchedule::parse(expr, tz).unwrap_or_else(|e| panic!("{e}"));
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = c.next_after(t).expect("a next time");
            out.push(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        out
    }

    fn next_n_with(expr: &str, tz: Tz, dst: DstPolicy, from: &str, n: usize) -> Vec<String> {
        let c = CronSchedule::parse(expr, tz)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_dst(dst);
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = c.next_after(t).expect("a next time");
            out.push(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        out
    }

    fn reason(expr: &str) -> String {
        match CronSchedule::parse(expr, Tz::UTC) {
            Err(ScheduleError::InvalidCron { reason, .. }) => reason,
            Ok(_) => panic!("{expr:?} should not parse"),
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }

    const T0: &str = "2026-01-01T00:00:00Z"; // a Thursday

    #[test]
    fn day_of_week_0_and_7_are_sunday() {
        let sunday = vec!["2026-01-04T00:00:00Z".to_string()];
        assert_eq!(next_n("0 0 * * 0", Tz::UTC, T0, 1), sunday);
        assert_eq!(next_n("0 0 * * 7", Tz::UTC, T0, 1), sunday);
        assert_eq!(next_n("0 0 * * SUN", Tz::UTC, T0, 1), sunday);
        assert_eq!(
            next_n("0 0 * * 1", Tz::UTC, T0, 1),
            ["2026-01-05T00:00:00Z"]
        );
        // Ranges ending in 7 or SUN reach Sunday.
        assert_eq!(
            next_n("0 0 * * 5-7", Tz::UTC, T0, 3),
            [
                "2026-01-02T00:00:00Z",
                "2026-01-03T00:00:00Z",
                "2026-01-04T00:00:00Z"
            ]
        );
        assert_eq!(
            next_n("0 0 * * FRI-SUN", Tz::UTC, T0, 4),
            next_n("0 0 * * 5-7", Tz::UTC, T0, 4)
        );
    }

    #[test]
    fn both_days_restricted_is_or() {
        // Every 13th and every Friday.
        assert_eq!(
            next_n("0 0 13 * FRI", Tz::UTC, T0, 8),
            [
                "2026-01-02T00:00:00Z",
                "2026-01-09T00:00:00Z",
                "2026-01-13T00:00:00Z",
                "2026-01-16T00:00:00Z",
                "2026-01-23T00:00:00Z",
                "2026-01-30T00:00:00Z",
                "2026-02-06T00:00:00Z",
                "2026-02-13T00:00:00Z",
            ]
        );
    }

    #[test]
    fn a_day_field_starting_with_star_makes_it_and() {
        // `*` day-of-week: only the 13th restricts.
        assert_eq!(
            next_n("0 0 13 * *", Tz::UTC, T0, 2),
            ["2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"]
        );
        // `*` day-of-month: only Friday restricts.
        assert_eq!(
            next_n("0 0 * * FRI", Tz::UTC, T0, 2),
            ["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"]
        );
        // `*/2` starts with `*`: odd days AND Fridays (Vixie), not odd days OR Fridays.
        assert_eq!(
            next_n("0 0 */2 * FRI", Tz::UTC, T0, 4),
            [
                "2026-01-09T00:00:00Z",
                "2026-01-23T00:00:00Z",
                "2026-02-13T00:00:00Z",
                "2026-02-27T00:00:00Z",
            ]
        );
        // `*/2` day-of-week (Sun, Tue, Thu, Sat) AND the 13th.
        assert_eq!(
            next_n("0 0 13 * */2", Tz::UTC, T0, 2),
            ["2026-01-13T00:00:00Z", "2026-06-13T00:00:00Z"]
        );
        // `?` is `*`.
        assert_eq!(
            next_n("0 0 ? * FRI", Tz::UTC, T0, 2),
            next_n("0 0 * * FRI", Tz::UTC, T0, 2)
        );
    }

    #[test]
    fn seconds_field() {
        assert_eq!(
            next_n("*/20 * * * * *", Tz::UTC, "2026-01-01T12:00:05Z", 3),
            [
                "2026-01-01T12:00:20Z",
                "2026-01-01T12:00:40Z",
                "2026-01-01T12:01:00Z"
            ]
        );
        assert_eq!(
            next_n("15 30 9 * * MON", Tz::UTC, T0, 1),
            ["2026-01-05T09:30:15Z"]
        );
        // 5 fields fire at second 0.
        assert_eq!(
            next_n("* * * * *", Tz::UTC, "2026-01-01T12:00:05Z", 1),
            ["2026-01-01T12:01:00Z"]
        );
    }

    #[test]
    fn macros() {
        let cases = [
            ("@hourly", "2026-01-01T01:00:00Z"),
            ("@daily", "2026-01-02T00:00:00Z"),
            ("@midnight", "2026-01-02T00:00:00Z"),
            ("@weekly", "2026-01-04T00:00:00Z"),
            ("@monthly", "2026-02-01T00:00:00Z"),
            ("@yearly", "2027-01-01T00:00:00Z"),
            ("@annually", "2027-01-01T00:00:00Z"),
            ("@DAILY", "2026-01-02T00:00:00Z"),
        ];
        for (m, want) in cases {
            assert_eq!(next_n(m, Tz::UTC, T0, 1), [want], "{m}");
        }
        let c = CronSchedule::parse("@daily", Tz::UTC).unwrap();
        assert_eq!(c.expr(), "@daily");
        assert!(reason("@reboot").contains("`@reboot` is not supported"));
        assert!(reason("@fortnightly").contains("unknown macro `@fortnightly`; use one of"));
    }

    #[test]
    fn names_ranges_steps_lists() {
        assert_eq!(
            next_n("0 9 * jan,Jul mon-fri", Tz::UTC, "2026-01-30T12:00:00Z", 2),
            ["2026-07-01T09:00:00Z", "2026-07-02T09:00:00Z"]
        );
        assert_eq!(
            next_n("5-20/5,45 */6 * * *", Tz::UTC, T0, 5),
            [
                "2026-01-01T00:05:00Z",
                "2026-01-01T00:10:00Z",
                "2026-01-01T00:15:00Z",
                "2026-01-01T00:20:00Z",
                "2026-01-01T00:45:00Z"
            ]
        );
        assert_eq!(
            next_n("0 0 1 FEB-APR/2 *", Tz::UTC, T0, 2),
            ["2026-02-01T00:00:00Z", "2026-04-01T00:00:00Z"]
        );
    }

    #[test]
    fn last_nth_and_weekday_extensions() {
        assert_eq!(
            next_n("0 0 L * *", Tz::UTC, T0, 3),
            [
                "2026-01-31T00:00:00Z",
                "2026-02-28T00:00:00Z",
                "2026-03-31T00:00:00Z"
            ]
        );
        assert_eq!(
            next_n("0 0 * * 5L", Tz::UTC, T0, 3),
            [
                "2026-01-30T00:00:00Z",
                "2026-02-27T00:00:00Z",
                "2026-03-27T00:00:00Z"
            ]
        );
        assert_eq!(
            next_n("0 0 * * FRIL", Tz::UTC, T0, 1),
            ["2026-01-30T00:00:00Z"]
        );
        assert_eq!(
            next_n("0 0 * * FRI#2", Tz::UTC, T0, 3),
            [
                "2026-01-09T00:00:00Z",
                "2026-02-13T00:00:00Z",
                "2026-03-13T00:00:00Z"
            ]
        );
        // 15W: Jan 15 is a Thursday; Feb 15 and Mar 15 are Sundays (-> Monday 16th);
        // Aug 15 is a Saturday (-> Friday 14th).
        assert_eq!(
            next_n("0 0 15W * *", Tz::UTC, T0, 3),
            [
                "2026-01-15T00:00:00Z",
                "2026-02-16T00:00:00Z",
                "2026-03-16T00:00:00Z"
            ]
        );
        assert_eq!(
            next_n("0 0 15W * *", Tz::UTC, "2026-08-01T00:00:00Z", 1),
            ["2026-08-14T00:00:00Z"]
        );
        // LW: Jan 31 and Feb 28 are Saturdays, May 31 a Sunday.
        assert_eq!(
            next_n("0 0 LW * *", Tz::UTC, T0, 2),
            ["2026-01-30T00:00:00Z", "2026-02-27T00:00:00Z"]
        );
        assert_eq!(
            next_n("0 0 LW * *", Tz::UTC, "2026-05-01T00:00:00Z", 1),
            ["2026-05-29T00:00:00Z"]
        );
        // L with a restricted day-of-week is still the OR rule.
        assert_eq!(
            next_n("0 0 L * MON", Tz::UTC, "2026-01-27T00:00:00Z", 2),
            ["2026-01-31T00:00:00Z", "2026-02-02T00:00:00Z"]
        );
    }

    #[test]
    fn evaluated_in_the_zone() {
        // Midnight in Shanghai (UTC+8) is 16:00Z the day before.
        assert_eq!(
            next_n("0 0 * * *", Tz::Asia__Shanghai, T0, 2),
            ["2026-01-01T16:00:00Z", "2026-01-02T16:00:00Z"]
        );
        // Weekday matching also uses local days: Monday 00:00 in Shanghai is Sunday 16:00Z.
        assert_eq!(
            next_n("0 0 * * MON", Tz::Asia__Shanghai, T0, 1),
            ["2026-01-04T16:00:00Z"]
        );
        assert_eq!(
            next_n("0 9 * * *", Tz::America__New_York, T0, 1),
            ["2026-01-01T14:00:00Z"]
        );
    }

    #[test]
    fn strictly_after() {
        let c = CronSchedule::parse("0 0 * * *", Tz::UTC).unwrap();
        assert_eq!(
            c.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-02T00:00:00Z"))
        );
        assert_eq!(
            c.next_after(utc("2026-01-01T00:00:00.5Z")),
            Some(utc("2026-01-02T00:00:00Z"))
        );
        assert_eq!(
            c.next_after(utc("2025-12-31T23:59:59.999Z")),
            Some(utc("2026-01-01T00:00:00Z"))
        );
        let s = CronSchedule::parse("* * * * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.next_after(utc("2026-01-01T00:00:00.25Z")),
            Some(utc("2026-01-01T00:00:01Z"))
        );
    }

    const NY: Tz = Tz::America__New_York;
    const BERLIN: Tz = Tz::Europe__Berlin;

    #[test]
    fn fixed_time_in_a_spring_forward_gap_runs_after_the_gap() {
        // New York 2026-03-08: 02:00 EST -> 03:00 EDT (07:00Z).
        assert_eq!(
            next_n("30 2 * * *", NY, "2026-03-07T12:00:00Z", 3),
            [
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z",
                "2026-03-10T06:30:00Z"
            ]
        );
        assert_eq!(
            next_n("0 30 2 * * *", NY, "2026-03-08T00:00:00Z", 1),
            ["2026-03-08T07:00:00Z"]
        );
        // Berlin 2026-03-29: 02:00 CET -> 03:00 CEST (01:00Z).
        assert_eq!(
            next_n("30 2 * * *", BERLIN, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
        );
        // Strictly after: once the post-gap run is past, the next day's run is next.
        assert_eq!(
            next_n("30 2 * * *", BERLIN, "2026-03-29T01:00:00Z", 1),
            ["2026-03-30T00:30:00Z"]
        );
    }

    #[test]
    fn fixed_time_in_a_fall_back_overlap_runs_once() {
        // New York 2026-11-01: 01:00-02:00 happens at 05:00Z (EDT) and 06:00Z (EST).
        assert_eq!(
            next_n("30 1 * * *", NY, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        assert_eq!(
            next_n("30 1 * * *", NY, "2026-11-01T05:45:00Z", 1),
            ["2026-11-02T06:30:00Z"]
        );
        // Berlin 2026-10-25: 02:00-03:00 happens at 00:00Z (CEST) and 01:00Z (CET).
        assert_eq!(
            next_n("30 2 * * *", BERLIN, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
    }

    #[test]
    fn wildcard_entries_fire_on_both_passes_and_skip_gaps() {
        assert_eq!(
            next_n("*/30 * * * *", NY, "2026-11-01T04:50:00Z", 5),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T07:00:00Z"
            ]
        );
        // Starting inside the second pass.
        assert_eq!(
            next_n("*/30 * * * *", NY, "2026-11-01T06:10:00Z", 2),
            ["2026-11-01T06:30:00Z", "2026-11-01T07:00:00Z"]
        );
        assert_eq!(
            next_n("*/30 * * * *", BERLIN, "2026-10-24T23:50:00Z", 5),
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T02:00:00Z"
            ]
        );
        // Hourly across spring-forward: 02:00 does not exist, nothing fires for it.
        assert_eq!(
            next_n("0 * * * *", NY, "2026-03-08T05:30:00Z", 3),
            [
                "2026-03-08T06:00:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T08:00:00Z"
            ]
        );
        assert_eq!(
            next_n("0 * * * *", BERLIN, "2026-03-29T00:30:00Z", 2),
            ["2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"]
        );
        // A `*` minute makes a range of hours wildcard: 02:00 and 02:30 are skipped...
        assert_eq!(
            next_n("*/30 1-3 * * *", NY, "2026-03-08T06:00:00Z", 3),
            [
                "2026-03-08T06:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T07:30:00Z"
            ]
        );
        // ...and 01:00 and 01:30 fire on both passes at fall-back.
        assert_eq!(
            next_n("*/30 1-3 * * *", NY, "2026-11-01T04:50:00Z", 5),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T07:00:00Z"
            ]
        );
        // A `*/30` seconds field makes a 6-field entry wildcard.
        assert_eq!(
            next_n("*/30 30 1 * * *", NY, "2026-11-01T05:00:00Z", 4),
            [
                "2026-11-01T05:30:00Z",
                "2026-11-01T05:30:30Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T06:30:30Z"
            ]
        );
        assert_eq!(
            next_n("*/30 30 2 * * *", NY, "2026-03-08T00:00:00Z", 1),
            ["2026-03-09T06:30:00Z"]
        );
        // Every second through the overlap is continuous in UTC.
        let s = CronSchedule::parse("* * * * * *", NY).unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-01T05:59:59Z")),
            Some(utc("2026-11-01T06:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-03-08T06:59:59Z")),
            Some(utc("2026-03-08T07:00:00Z"))
        );
    }

    #[test]
    fn fixed_time_detection() {
        let fixed = |expr: &str| CronSchedule::parse(expr, NY).unwrap().is_fixed_time();
        // Debian: fixed unless the minute or hour field (or here the seconds field)
        // starts with `*`; ranges, lists and steps starting with a number are fixed.
        for expr in [
            "30 2 * * *",
            "@daily",
            "@weekly",
            "30 1-3 * * *",
            "0,30 2 * * *",
            "0 1-5/2 * * *",
            "30 2,14 * * *",
            "0-59 0-23 * * *",
            "0 30 2 * * *",
            "0,30 30 2 * * *",
        ] {
            assert!(fixed(expr), "{expr} should be fixed-time");
        }
        for expr in [
            "@hourly",
            "* * * * *",
            "*/20 2 * * *",
            "0 */2 * * *",
            "0-59 * * * *",
            "* 30 2 * * *",
            "*/10 30 2 * * *",
            "0 30 * * * *",
        ] {
            assert!(!fixed(expr), "{expr} should be wildcard");
        }
    }

    const LONDON: Tz = Tz::Europe__London;

    #[test]
    fn fixed_time_ranges_and_lists_follow_debian() {
        // London 2026-10-25: 01:00-02:00 happens at 00:00Z (BST) and 01:00Z (GMT).
        // `0 1-3` is fixed-time: 01:00 local runs once, on the first pass.
        assert_eq!(
            next_n("0 1-3 * * *", LONDON, "2026-10-24T23:30:00Z", 3),
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T02:00:00Z",
                "2026-10-25T03:00:00Z"
            ]
        );
        // London 2026-03-29: 01:00 GMT jumps to 02:00 BST (01:00Z). 01:00 runs at the
        // end of the gap, and 02:00, which is that same instant, does not run twice.
        assert_eq!(
            next_n("0 1-3 * * *", LONDON, "2026-03-28T23:30:00Z", 3),
            [
                "2026-03-29T01:00:00Z",
                "2026-03-29T02:00:00Z",
                "2026-03-30T00:00:00Z"
            ]
        );
        // New York 2026-03-08: both 02:00 and 02:30 fall in the gap; one run after it.
        assert_eq!(
            next_n("0,30 2 * * *", NY, "2026-03-08T05:00:00Z", 3),
            [
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:00:00Z",
                "2026-03-09T06:30:00Z"
            ]
        );
        // Steps starting with a number are fixed too: 01:30 and 03:30 around the gap.
        assert_eq!(
            next_n("30 1-5/2 * * *", NY, "2026-03-08T06:00:00Z", 3),
            [
                "2026-03-08T06:30:00Z",
                "2026-03-08T07:30:00Z",
                "2026-03-08T09:30:00Z"
            ]
        );
        assert_eq!(
            next_n("30 1-3 * * *", NY, "2026-03-08T06:00:00Z", 3),
            [
                "2026-03-08T06:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T07:30:00Z"
            ]
        );
        assert_eq!(
            next_n("30 1-3 * * *", NY, "2026-11-01T05:00:00Z", 3),
            [
                "2026-11-01T05:30:00Z",
                "2026-11-01T07:30:00Z",
                "2026-11-01T08:30:00Z"
            ]
        );
    }

    #[test]
    fn fixed_time_ranges_in_half_hour_and_0245_gaps() {
        // Chatham 2026-09-27: 02:45 +12:45 jumps to 03:45 +13:45 (2026-09-26T14:00Z).
        // 03:00 is in the gap and runs at its end.
        let chatham = Tz::Pacific__Chatham;
        assert_eq!(
            next_n("0 1-3 * * *", chatham, "2026-09-26T12:00:00Z", 4),
            [
                "2026-09-26T12:15:00Z",
                "2026-09-26T13:15:00Z",
                "2026-09-26T14:00:00Z",
                "2026-09-27T11:15:00Z"
            ]
        );
        // Lord Howe 2026-10-04: 02:00 +10:30 jumps to 02:30 +11 (2026-10-03T15:30Z).
        let lord_howe = Tz::Australia__Lord_Howe;
        assert_eq!(
            next_n("0 1-3 * * *", lord_howe, "2026-10-03T14:00:00Z", 3),
            [
                "2026-10-03T14:30:00Z",
                "2026-10-03T15:30:00Z",
                "2026-10-03T16:00:00Z"
            ]
        );
        // 02:15 is in the gap, 02:45 is not.
        assert_eq!(
            next_n("15,45 2 * * *", lord_howe, "2026-10-03T14:00:00Z", 2),
            ["2026-10-03T15:30:00Z", "2026-10-03T15:45:00Z"]
        );
        // Lord Howe 2026-04-05: 02:00 +11 goes back to 01:30 +10:30 (2026-04-04T15:00Z),
        // repeating 01:30-02:00; a fixed 01:45 runs on the first pass only.
        assert_eq!(
            next_n("45 1,2 * * *", lord_howe, "2026-04-04T14:00:00Z", 3),
            [
                "2026-04-04T14:45:00Z",
                "2026-04-04T16:15:00Z",
                "2026-04-05T15:15:00Z"
            ]
        );
    }

    #[test]
    fn dst_policy_skip() {
        let skip = |expr: &str, tz: Tz, from: &str, n: usize| {
            next_n_with(expr, tz, DstPolicy::Skip, from, n)
        };
        // A fixed time in the gap does not run that day.
        assert_eq!(
            skip("30 2 * * *", NY, "2026-03-07T12:00:00Z", 2),
            ["2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"]
        );
        // A wildcard entry's repeated times run on the first pass only.
        assert_eq!(
            skip("*/30 * * * *", NY, "2026-11-01T04:50:00Z", 4),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T07:00:00Z",
                "2026-11-01T07:30:00Z"
            ]
        );
        // ...also when the search starts inside the second pass.
        assert_eq!(
            skip("*/30 * * * *", NY, "2026-11-01T06:10:00Z", 1),
            ["2026-11-01T07:00:00Z"]
        );
        assert_eq!(
            skip("30 1 * * *", NY, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
    }

    #[test]
    fn dst_policy_both() {
        let both = |expr: &str, tz: Tz, from: &str, n: usize| {
            next_n_with(expr, tz, DstPolicy::Both, from, n)
        };
        // A wildcard entry's gap times (02:00, 02:30) run once, at the end of the gap.
        assert_eq!(
            both("*/30 * * * *", NY, "2026-03-08T06:20:00Z", 3),
            [
                "2026-03-08T06:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T07:30:00Z"
            ]
        );
        // 02:00 in the gap and 03:00 right after it are one run.
        assert_eq!(
            both("0 * * * *", BERLIN, "2026-03-29T00:30:00Z", 2),
            ["2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"]
        );
        // A fixed time runs on both passes of the repeated hour.
        assert_eq!(
            both("30 1 * * *", NY, "2026-10-31T12:00:00Z", 3),
            [
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-02T06:30:00Z"
            ]
        );
        assert_eq!(
            both("30 1 * * *", NY, "2026-11-01T05:45:00Z", 1),
            ["2026-11-01T06:30:00Z"]
        );
        // A fixed time in the gap still runs after it.
        assert_eq!(
            both("30 2 * * *", NY, "2026-03-07T12:00:00Z", 1),
            ["2026-03-08T07:00:00Z"]
        );
    }

    #[test]
    fn dst_policy_is_part_of_the_schedule() {
        let base = CronSchedule::parse("0 0 * * *", Tz::Asia__Shanghai).unwrap();
        assert_eq!(base.dst(), DstPolicy::Debian);
        assert_eq!(base.to_string(), "cron \"0 0 * * *\" (Asia/Shanghai)");
        let skip = base.clone().with_dst(DstPolicy::Skip);
        assert_eq!(skip.dst(), DstPolicy::Skip);
        assert_eq!(
            skip.to_string(),
            "cron \"0 0 * * *\" (Asia/Shanghai) dst=skip"
        );
        assert_eq!(
            base.clone().with_dst(DstPolicy::Both).to_string(),
            "cron \"0 0 * * *\" (Asia/Shanghai) dst=both"
        );
        assert_ne!(skip, base);
        assert_eq!(skip.clone().with_dst(DstPolicy::Debian), base);
        assert_eq!(skip, base.with_dst(DstPolicy::Skip));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            reason("0 25 * * *"),
            "field 2 (hour) `25` is out of range 0-23"
        );
        assert_eq!(
            reason("0 0 * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds \
             first, found 4"
        );
        assert!(reason("0 0 0 1 1 * 2030").contains("a year field is not supported"));
        assert!(reason("").contains("empty"));
        assert_eq!(
            reason("60 0 * * * *"),
            "field 1 (second) `60` is out of range 0-59"
        );
        assert_eq!(
            reason("0 60 * * * *"),
            "field 2 (minute) `60` is out of range 0-59"
        );
        assert_eq!(
            reason("0 0 0 * *"),
            "field 3 (day-of-month) `0` is out of range 1-31"
        );
        assert!(reason("0 0 * 13 *").starts_with("field 4 (month) `13` is out of range 1-12"));
        assert!(reason("0 0 * FOO *").contains("field 4 (month) `FOO` is not valid; expected"));
        assert_eq!(
            reason("0 0 * * 8"),
            "field 5 (day-of-week) `8` is out of range 0-7"
        );
        assert!(reason("MON 0 * * *").starts_with("field 1 (minute) `MON` is not valid"));
        assert!(reason("0 0 * * FRI#6").contains("field 5 (day-of-week) `FRI#6`"));
        assert!(reason("0 0 * * L").contains("field 5 (day-of-week) `L` alone"));
        assert!(reason("0 L * * *").contains("field 2 (hour) `L` is not valid"));
        assert!(reason("0 0 * * 5W").starts_with("field 5 (day-of-week) `5W` is not valid"));
        assert!(reason("0 0 5-1 * *").contains("field 3 (day-of-month) `5-1`: the range"));
        assert!(reason("*/0 * * * *").contains("field 1 (minute) `*/0`: the step must be"));
        assert!(reason("5/10 * * * *").contains("write `5-59/10` or `*/10`"));
        assert!(reason("1,,2 * * * *").contains("field 1 (minute) `1,,2` has an empty"));
        assert!(reason("0 0 1-5W * *").contains("`W` takes a single day"));
        assert!(reason("0 0 30 2 *").contains("never occurs"));
        assert!(reason("0 0 31 4,6 *").contains("never occurs"));
        assert!(reason("0 0 */10 2 MON#5").contains("never match together"));
        assert!(reason("0 0 L,LW * *").contains("combines `L` and `LW`"));
        // ...but not when day-of-week can still match, or some month has the day.
        assert!(CronSchedule::parse("0 0 30 2 MON", Tz::UTC).is_ok());
        assert!(CronSchedule::parse("0 0 29 2 *", Tz::UTC).is_ok());
        let full = CronSchedule::parse("0 25 * * *", Tz::UTC)
            .unwrap_err()
            .to_string();
        assert_eq!(
            full,
            "invalid cron expression `0 25 * * *`: field 2 (hour) `25` is out of range 0-23"
        );
    }

    #[test]
    fn steps_longer_than_the_field_are_rejected() {
        assert_eq!(
            reason("*/61 * * * *"),
            "field 1 (minute) `*/61`: the step 61 is larger than the field's range 0-59; \
             steps restart every hour, so use at most 60"
        );
        assert!(reason("*/61 * * * * *").starts_with("field 1 (second) `*/61`: the step 61"));
        assert!(reason("0-30/61 * * * *").starts_with("field 1 (minute) `0-30/61`"));
        assert!(reason("0 */25 * * *").starts_with("field 2 (hour) `*/25`: the step 25"));
        assert!(reason("0 0 */32 * *").starts_with("field 3 (day-of-month) `*/32`"));
        assert!(reason("0 0 * */13 *").starts_with("field 4 (month) `*/13`"));
        assert!(reason("0 0 * * */8").contains("restart every week, so use at most 7"));
        assert!(reason("0 0 * * 1,*/8").starts_with("field 5 (day-of-week) `*/8`"));
        // One full cycle selects the first value only, which is what it says.
        assert_eq!(
            next_n("*/60 * * * *", Tz::UTC, T0, 2),
            next_n("0 * * * *", Tz::UTC, T0, 2)
        );
        assert_eq!(
            next_n("0 */24 * * *", Tz::UTC, T0, 2),
            next_n("0 0 * * *", Tz::UTC, T0, 2)
        );
        assert_eq!(
            next_n("0 0 * * */7", Tz::UTC, T0, 2),
            next_n("0 0 * * 0", Tz::UTC, T0, 2)
        );
        for ok in ["0 0 */31 * *", "0 0 1 */12 *", "*/60 * * * * *"] {
            assert!(CronSchedule::parse(ok, Tz::UTC).is_ok(), "{ok}");
        }
    }

    #[test]
    fn long_input_is_shortened_in_messages() {
        let check = |expr: String, field_part: &str| {
            let e = CronSchedule::parse(&expr, Tz::UTC).unwrap_err();
            let ScheduleError::InvalidCron { expr: kept, .. } = &e else {
                panic!("{e:?}");
            };
            assert_eq!(kept, &expr, "the error keeps the whole input");
            let msg = e.to_string();
            assert!(msg.chars().count() < 400, "{} chars: {msg}", msg.len());
            let n = expr.chars().count();
            assert!(msg.contains(&format!("…` ({n} characters): ")), "{msg}");
            assert!(msg.contains(field_part), "{msg}");
        };
        check(
            format!("0 0 * * * {}", "1".repeat(10_000)),
            "field 6 (day-of-week) `1111",
        );
        check(format!("@{}", "x".repeat(10_000)), "unknown macro `@xxx");
        check(
            format!("{} * * * *", "1,".repeat(5_000)),
            "(10000 characters) has an empty list item",
        );
        check(
            format!("0 9{}-1 * * *", "0".repeat(10_000)),
            "field 2 (hour) `9000",
        );
        check(
            format!("0 {} * * *", "é".repeat(9_000)),
            "(9000 characters)",
        );
        // Short input is shown whole.
        let msg = CronSchedule::parse("0 0 * * * x", Tz::UTC)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("invalid cron expression `0 0 * * * x`: "),
            "{msg}"
        );
    }

    #[test]
    fn leap_day_and_far_future() {
        assert_eq!(
            next_n("0 0 29 2 *", Tz::UTC, T0, 2),
            ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]
        );
        // Fifth Friday of February: only in leap years starting on a Friday.
        assert_eq!(
            next_n("0 0 * 2 FRI#5", Tz::UTC, T0, 1),
            ["2036-02-29T00:00:00Z"]
        );
    }
}
