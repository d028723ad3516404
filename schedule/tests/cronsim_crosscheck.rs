//! Cross-check against an independent crontab implementation: `fixtures/cronsim.json`
//! holds random expressions with the next fire times computed by the Python `cronsim`
//! package (see `fixtures/gen_cronsim.py` for how it is generated and which DST cases
//! are excluded because the two implementations' rules legitimately differ).

use chrono::{DateTime, SecondsFormat, Utc};
use kairos_schedule::{CronSchedule, parse_timezone};
use serde_json::Value;

#[test]
fn next_times_match_cronsim() {
    let text = include_str!("fixtures/cronsim.json");
    let fixture: Value = serde_json::from_str(text).expect("valid fixture JSON");
    let cases = fixture["cases"].as_array().expect("cases array");
    assert!(cases.len() >= 300, "fixture too small: {}", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let expr = case["expr"].as_str().unwrap();
        let zone = case["tz"].as_str().unwrap();
        let start = case["start"].as_str().unwrap();
        let want: Vec<&str> = case["next"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let tz = parse_timezone(zone).unwrap();
        let sched = match CronSchedule::parse(expr, tz) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{expr:?} ({zone}): rejected: {e}"));
                continue;
            }
        };
        let mut t: DateTime<Utc> = DateTime::parse_from_rfc3339(start).unwrap().into();
        let mut got = Vec::new();
        for _ in 0..want.len() {
            match sched.next_after(t) {
                Some(n) => {
                    got.push(n.to_rfc3339_opts(SecondsFormat::Secs, true));
                    t = n;
                }
                None => break,
            }
        }
        if got != want {
            failures.push(format!(
                "{expr:?} ({zone}) from {start}:\n  cronsim {want:?}\n  kairos  {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
