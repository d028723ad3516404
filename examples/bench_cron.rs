//! Cron firing lateness: many persisted cron jobs all due at the same second, every
//! second, and how late each run starts after its nominal time.
//!
//! ```text
//! cargo run --release --example bench_cron -- --database sqlite --jobs 1000 --seconds 60
//! cargo run --release --example bench_cron -- --database postgres://user:pass@127.0.0.1/db
//! ```
//!
//! Declares `--jobs` `[[jobs]]` with the schedule `* * * * * *` (every second) and runs
//! one node for `--seconds`. Each run records when it started; its lateness is that
//! time minus its nominal slot. Only whole seconds from the second after the node's
//! first to the second before its last are counted (so `--seconds` is at least 5), and
//! start-up and shutdown do not count as misses. The
//! node has twice as many workers as jobs unless `--workers` says otherwise: runs that
//! start together need a worker each.
//!
//! Before it, a line gives how late each second's first and last runs started (medians
//! over the seconds): the first tells how punctually the node wakes, the gap to the
//! last what starting all of a second's runs costs.
//!
//! The last line is machine-readable:
//! `lateness_p50_ms=<x> lateness_p99_ms=<y> lateness_max_ms=<z> missed=<n>`, where
//! `missed` counts (job, second) slots in the measured window that never started.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kairos::config::Config;
use kairos::task::TaskOutcome;
use kairos::{Registry, Scheduler, TaskContext, TaskDef};
use serde_json::Value;

/// (job id, nominal slot, lateness in microseconds) of every run that started.
static STARTS: Mutex<Vec<(i64, DateTime<Utc>, i64)>> = Mutex::new(Vec::new());

fn tick(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    let late = (Utc::now() - ctx.scheduled_for())
        .num_microseconds()
        .unwrap_or(i64::MAX);
    STARTS
        .lock()
        .unwrap()
        .push((ctx.job_id().unwrap_or(0), ctx.scheduled_for(), late));
    Box::pin(async { Ok(None) })
}

struct Args {
    database: String,
    jobs: usize,
    seconds: u64,
    workers: Option<usize>,
    lead_ms: Option<u64>,
}

fn args() -> Args {
    let mut a = Args {
        database: "sqlite".into(),
        jobs: 1000,
        seconds: 60,
        workers: None,
        lead_ms: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--database" => a.database = val(),
            "--jobs" => a.jobs = val().parse().expect("--jobs N"),
            "--seconds" => a.seconds = val().parse().expect("--seconds N"),
            "--workers" => a.workers = Some(val().parse().expect("--workers N")),
            "--lead-ms" => a.lead_ms = Some(val().parse().expect("--lead-ms N")),
            other => panic!(
                "unknown flag {other}; use --database sqlite|URL --jobs N --seconds N --workers N --lead-ms N"
            ),
        }
    }
    if a.seconds < 5 {
        // Two seconds at each end are start-up and shutdown, not measured.
        eprintln!(
            "--seconds {}: use at least 5; the first and last two seconds are not measured",
            a.seconds
        );
        std::process::exit(2);
    }
    a
}

/// The `q` quantile of sorted values, in milliseconds.
fn quantile_ms(sorted: &[i64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG=kairos=debug shows what the node does during a stall.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let a = args();
    let _dir;
    let url = if a.database == "sqlite" {
        let d = tempfile::tempdir()?;
        let url = format!("sqlite://{}", d.path().join("bench_cron.db").display());
        _dir = d;
        url
    } else {
        a.database.clone()
    };
    if url.starts_with("postgres") && kairos::Admin::connect(&url).await.is_ok() {
        // Start from empty tables so earlier runs do not skew the figures.
        kairos::test_support::execute(
            &url,
            "TRUNCATE kairos_runs, kairos_run_tags, kairos_run_history, kairos_job_slots, kairos_jobs",
        )
        .await?;
    }
    let mut toml = String::new();
    for i in 0..a.jobs {
        toml.push_str(&format!(
            "[[jobs]]\nname = \"every_second_{i}\"\ntask = \"tick\"\nschedule = \"* * * * * *\"\n\n"
        ));
    }
    let config = Config::parse(&toml, "bench_cron.toml")?;
    let registry = Registry::from_tasks([TaskDef::new("tick", tick, "examples/bench_cron.rs")])?;
    let mut builder = Scheduler::builder()
        .database_url(&url)
        .registry(registry)
        .config(config)
        .max_workers(a.workers.unwrap_or(a.jobs * 2).max(16));
    if let Some(ms) = a.lead_ms {
        builder = builder.lead(Duration::from_millis(ms));
    }
    let sched = builder.build().await?;
    let h = sched.handle();
    let started = Utc::now();
    let node = tokio::spawn(sched.run());
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    h.shutdown();
    node.await??;
    let stopped = Utc::now();

    // The measured window: whole seconds strictly after the first and before the last.
    let first = started.timestamp() + 2;
    let last = stopped.timestamp() - 2;
    let in_window = |t: &DateTime<Utc>| (first..=last).contains(&t.timestamp());
    let starts = STARTS.lock().unwrap();
    let mut seen = HashSet::new();
    let mut late: Vec<i64> = Vec::new();
    for (job, slot, us) in starts.iter().filter(|(_, s, _)| in_window(s)) {
        if seen.insert((*job, *slot)) {
            late.push(*us);
        }
    }
    // The second whose runs started latest, to tell a stall from a steady delay.
    if let Some((_, slot, us)) = starts
        .iter()
        .filter(|(_, s, _)| in_window(s))
        .max_by_key(|(_, _, us)| *us)
    {
        println!(
            "latest_start: slot {} (second {} of the window) started {:.1} ms late",
            slot.format("%H:%M:%S"),
            slot.timestamp() - first + 1,
            *us as f64 / 1000.0
        );
    }
    // Per second: how late its first run started (the wake-up) and its last (the wake-up
    // plus starting every run of the second).
    let mut per_second: std::collections::BTreeMap<i64, (i64, i64)> = Default::default();
    for (_, slot, us) in starts.iter().filter(|(_, s, _)| in_window(s)) {
        let e = per_second
            .entry(slot.timestamp())
            .or_insert((i64::MAX, i64::MIN));
        e.0 = e.0.min(*us);
        e.1 = e.1.max(*us);
    }
    let mut firsts: Vec<i64> = per_second.values().map(|v| v.0).collect();
    let mut lasts: Vec<i64> = per_second.values().map(|v| v.1).collect();
    firsts.sort_unstable();
    lasts.sort_unstable();
    println!(
        "per second: first start p50 {:.1} ms, last start p50 {:.1} ms",
        quantile_ms(&firsts, 0.5),
        quantile_ms(&lasts, 0.5)
    );
    late.sort_unstable();
    let expected = a.jobs * usize::try_from((last - first + 1).max(0)).unwrap_or(0);
    let missed = expected.saturating_sub(seen.len());
    let duplicates = starts.iter().filter(|(_, s, _)| in_window(s)).count() - seen.len();
    println!(
        "jobs={} window_seconds={} runs_in_window={} duplicate_starts={duplicates}",
        a.jobs,
        (last - first + 1).max(0),
        seen.len()
    );
    println!(
        "lateness_p50_ms={:.1} lateness_p99_ms={:.1} lateness_max_ms={:.1} missed={missed}",
        quantile_ms(&late, 0.50),
        quantile_ms(&late, 0.99),
        late.last().map_or(f64::NAN, |&us| us as f64 / 1000.0),
    );
    Ok(())
}
