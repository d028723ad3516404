//! Throughput and latency benchmark of the embedded runtime with no-op tasks.
//!
//! ```text
//! cargo run --release --example bench -- --database sqlite --runs 20000
//! cargo run --release --example bench -- --database postgres://user:pass@127.0.0.1/db --runs 20000
//! cargo run --release --example bench -- --database sqlite --runs 20000 --task progress
//! ```
//!
//! 1. Enqueues N runs in batches (reports the enqueue rate on its own), then starts the
//!    node and times until the database shows all N finished.
//! 2. With idle workers, enqueues 200 runs one at a time 20 ms apart and measures the
//!    time from the enqueue call to the task starting.
//!
//! `--task progress` runs, instead of no-op tasks, tasks that report progress 100 times
//! (with a message) before they return: the cost of progress reporting.
//!
//! The last line is machine-readable:
//! `runs_per_sec=<n> enqueue_per_sec=<e> start_p50_ms=<x> start_p99_ms=<y>`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kairos::task::TaskOutcome;
use kairos::{Enqueue, Registry, Scheduler, TaskContext, TaskDef};
use serde_json::{Value, json};

static DONE: AtomicUsize = AtomicUsize::new(0);
static STARTS: Mutex<Vec<Option<Instant>>> = Mutex::new(Vec::new());

fn noop(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    DONE.fetch_add(1, Ordering::Relaxed);
    Box::pin(async { Ok(None) })
}

fn progress(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        for i in 1..=100u8 {
            ctx.progress(i, format!("step {i} of 100"));
        }
        DONE.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    })
}

fn probe(_: TaskContext, params: Value) -> BoxFuture<'static, TaskOutcome> {
    let now = Instant::now();
    if let Some(i) = params.get("i").and_then(Value::as_u64)
        && let Some(slot) = STARTS.lock().unwrap().get_mut(i as usize)
    {
        *slot = Some(now);
    }
    Box::pin(async { Ok(None) })
}

struct Args {
    database: String,
    runs: usize,
    workers: usize,
    batch: usize,
    task: &'static str,
}

fn args() -> Args {
    let mut a = Args {
        database: "sqlite".into(),
        runs: 20_000,
        workers: 256,
        batch: 1000,
        task: "noop",
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--database" => a.database = val(),
            "--runs" => a.runs = val().parse().expect("--runs N"),
            "--workers" => a.workers = val().parse().expect("--workers N"),
            "--batch" => a.batch = val().parse().expect("--batch N"),
            "--task" => {
                a.task = match val().as_str() {
                    "noop" => "noop",
                    "progress" => "progress",
                    other => panic!("--task {other}: use noop or progress"),
                }
            }
            other => panic!(
                "unknown flag {other}; use --database sqlite|URL --runs N --workers N --batch N \
                 --task noop|progress"
            ),
        }
    }
    a
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args();
    let _dir;
    let url = if a.database == "sqlite" {
        let d = tempfile::tempdir()?;
        let url = format!("sqlite://{}", d.path().join("bench.db").display());
        _dir = d;
        url
    } else {
        a.database.clone()
    };
    if url.starts_with("postgres") {
        // Start from empty tables so earlier runs do not skew the figures.
        if kairos::Admin::connect(&url).await.is_ok() {
            kairos::test_support::execute(
                &url,
                "TRUNCATE kairos_runs, kairos_run_tags, kairos_run_history",
            )
            .await?;
        }
    }
    let registry = Registry::from_tasks([
        TaskDef::new("noop", noop, "examples/bench.rs"),
        TaskDef::new("progress", progress, "examples/bench.rs"),
        TaskDef::new("probe", probe, "examples/bench.rs"),
    ])?;
    let sched = Scheduler::builder()
        .database_url(&url)
        .registry(registry)
        .max_workers(a.workers)
        .build()
        .await?;
    let h = sched.handle();

    // Phase 1: enqueue in batches, then drain.
    let t = Instant::now();
    let mut left = a.runs;
    while left > 0 {
        let n = left.min(a.batch);
        h.enqueue_many((0..n).map(|_| Enqueue::new(a.task)).collect())
            .await?;
        left -= n;
    }
    let enqueue_secs = t.elapsed().as_secs_f64();
    let enqueue_rate = a.runs as f64 / enqueue_secs;
    println!(
        "enqueued {} runs in {:.3}s ({:.0}/s)",
        a.runs, enqueue_secs, enqueue_rate
    );

    let run = tokio::spawn(sched.run());
    let t = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if DONE.load(Ordering::Relaxed) < a.runs {
            continue;
        }
        let open: u64 = h
            .admin()
            .queues()
            .await?
            .iter()
            .map(|q| q.queued + q.running)
            .sum();
        if open == 0 {
            break;
        }
    }
    let drain_secs = t.elapsed().as_secs_f64();
    let rate = a.runs as f64 / drain_secs;
    println!(
        "completed {} {} runs in {:.3}s ({:.0}/s)",
        a.runs, a.task, drain_secs, rate
    );

    // Phase 2: enqueue→start latency with idle workers.
    const PROBES: usize = 200;
    *STARTS.lock().unwrap() = vec![None; PROBES];
    let mut sent = Vec::with_capacity(PROBES);
    let mut calls = Vec::with_capacity(PROBES);
    for i in 0..PROBES {
        let t0 = Instant::now();
        h.enqueue(Enqueue::new("probe").params(json!({ "i": i })))
            .await?;
        calls.push(t0.elapsed().as_secs_f64() * 1000.0);
        sent.push(t0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let starts = STARTS.lock().unwrap().clone();
    let mut lat: Vec<f64> = sent
        .iter()
        .zip(&starts)
        .filter_map(|(s, e)| e.map(|e| (e - *s).as_secs_f64() * 1000.0))
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    calls.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "enqueue call (one run, its own transaction): p50 {:.3} ms",
        calls[calls.len() / 2]
    );
    println!(
        "start latency over {} runs: p50 {:.3} ms, p99 {:.3} ms",
        lat.len(),
        pct(0.5),
        pct(0.99)
    );

    h.shutdown();
    run.await??;
    println!(
        "runs_per_sec={:.0} enqueue_per_sec={:.0} start_p50_ms={:.3} start_p99_ms={:.3}",
        rate,
        enqueue_rate,
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}
