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
//! 3. Enqueues 200 runs the same way from another process (this program run again
//!    with `--enqueuer`), and measures the time from the enqueue call there to the task
//!    starting here: how fast another process's enqueue reaches an idle node (database
//!    notifications on PostgreSQL; on SQLite, the node's watch of the write-ahead log,
//!    or its poll every 500 ms where it cannot watch). That process, an admin tool
//!    rather than a node, also reports its enqueue call's p50.
//!
//! `--task progress` runs, instead of no-op tasks, tasks that report progress 100 times
//! (with a message) before they return: the cost of progress reporting. `--task typed`
//! runs a `#[kairos::task]` function that takes one param and returns a `Serialize`
//! value, stored as the run's result.
//!
//! `--prefill N` first writes N finished runs straight into the table (as a long-lived
//! installation has), to measure claims and completions beside them. `--limited` puts
//! a concurrency limit (never reached) on the runs' queue, so that every claim takes
//! the limited path: counted running runs under a lock shared by every node.
//!
//! `--nodes N` drains the runs with N node processes on the one database: this one and
//! N - 1 copies of this program (started with `--node`, told when to start by a line on
//! their standard input, stopped when it closes). The latency phases then run on this
//! node alone.
//!
//! `--idle SECONDS` instead measures what an idle node costs: its CPU time and (on
//! PostgreSQL) the database transactions it makes per second.
//!
//! The last line is machine-readable:
//! `runs_per_sec=<n> enqueue_per_sec=<e> start_p50_ms=<x> start_p99_ms=<y>
//! remote_start_p50_ms=<a> remote_start_p99_ms=<b> nodes=<N>`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kairos::task::TaskOutcome;
use kairos::{Enqueue, Registry, Scheduler, TaskContext, TaskDef};
use serde::Serialize;
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

/// What `typed` returns: stored as the run's JSON result.
#[derive(Serialize)]
struct Doubled {
    n: u64,
    doubled: u64,
}

#[kairos::task(name = "typed")]
async fn typed(n: u64) -> anyhow::Result<Doubled> {
    DONE.fetch_add(1, Ordering::Relaxed);
    Ok(Doubled { n, doubled: n * 2 })
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

/// Microseconds since the epoch: comparable across processes on one machine.
fn epoch_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

static REMOTE: Mutex<Vec<f64>> = Mutex::new(Vec::new());

/// A probe enqueued by another process: records how long after its enqueue call began
/// it started here.
fn remote_probe(_: TaskContext, params: Value) -> BoxFuture<'static, TaskOutcome> {
    let now = epoch_us();
    if let Some(sent) = params.get("sent_us").and_then(Value::as_i64) {
        REMOTE.lock().unwrap().push((now - sent) as f64 / 1000.0);
    }
    Box::pin(async { Ok(None) })
}

const PROBES: usize = 200;

/// The `--enqueuer` process: enqueues the remote probes through its own connection.
async fn enqueuer(url: &str) -> anyhow::Result<()> {
    let admin = kairos::Admin::connect(url).await?;
    let mut calls = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let params = json!({ "sent_us": epoch_us() });
        let began = Instant::now();
        admin
            .enqueue(Enqueue::new("remote_probe").params(params))
            .await?;
        calls.push(began.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    calls.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "enqueue call in that process (an admin tool, not a node): p50 {:.3} ms",
        calls[calls.len() / 2]
    );
    Ok(())
}

/// CPU time this process used, in seconds (Linux).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

/// Transactions the database counted so far (PostgreSQL).
async fn db_xacts(url: &str) -> Option<i64> {
    kairos::test_support::query_i64(
        url,
        "SELECT CAST(xact_commit + xact_rollback AS BIGINT) AS n FROM pg_stat_database \
         WHERE datname = current_database()",
    )
    .await
    .ok()
}

/// Writes `n` finished runs in one statement per engine, as old history.
async fn prefill(url: &str, n: u64) -> anyhow::Result<()> {
    let cols = "task, queue, origin, params, status, priority, run_at, scheduled_for, attempt, \
                max_retries, retry_delay_ms, timeout_ms, cancel_requested, created_at, \
                started_at, finished_at, node_id";
    let vals = "'noop', 'default', 'api', '{}', 'succeeded', 0, t, t, 1, 0, 1000, 3600000, \
                false, t, t, t + 1, 'old-node'";
    let sql = if url.starts_with("postgres") {
        format!(
            "INSERT INTO kairos_runs ({cols}) SELECT {vals} FROM \
             (SELECT CAST(1700000000000 + g AS BIGINT) AS t FROM generate_series(1, {n}) AS g) s; \
             ANALYZE kairos_runs"
        )
    } else {
        format!(
            "WITH RECURSIVE s(t) AS (SELECT 1700000000001 UNION ALL SELECT t + 1 FROM s \
             WHERE t < 1700000000000 + {n}) INSERT INTO kairos_runs ({cols}) SELECT {vals} FROM s"
        )
    };
    kairos::test_support::execute(url, &sql).await?;
    Ok(())
}

/// `--idle`: what a node with nothing to do costs.
async fn idle(url: &str, secs: u64, h: &kairos::SchedulerHandle) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pg = url.starts_with("postgres");
    // The statistics of other backends reach pg_stat_database within a second or so.
    let x0 = if pg { db_xacts(url).await } else { None };
    let (c0, t0) = (cpu_secs(), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (c1, elapsed) = (cpu_secs(), t0.elapsed().as_secs_f64());
    let x1 = if pg { db_xacts(url).await } else { None };
    // Our own two reads count as transactions too.
    let per_sec = match (x0, x1) {
        (Some(a), Some(b)) => format!("{:.1}", (b - a - 2).max(0) as f64 / elapsed),
        _ => "-".into(),
    };
    h.shutdown();
    println!(
        "idle node over {elapsed:.0}s: cpu {:.2}%, database transactions {per_sec}/s",
        (c1 - c0) / elapsed * 100.0
    );
    println!(
        "idle_cpu_pct={:.2} idle_db_xacts_per_sec={per_sec}",
        (c1 - c0) / elapsed * 100.0
    );
    Ok(())
}

/// A node with the benchmark's tasks, as `a` says.
async fn node(url: &str, a: &Args) -> anyhow::Result<Scheduler> {
    // `typed` comes from its #[kairos::task]; the others are plain functions.
    let mut registry = Registry::from_inventory()?;
    for task in [
        TaskDef::new("noop", noop, "examples/bench.rs"),
        TaskDef::new("progress", progress, "examples/bench.rs"),
        TaskDef::new("probe", probe, "examples/bench.rs"),
        TaskDef::new("remote_probe", remote_probe, "examples/bench.rs"),
    ] {
        registry.insert(task)?;
    }
    let mut builder = Scheduler::builder()
        .database_url(url)
        .registry(registry)
        .max_workers(a.workers);
    if a.limited {
        let toml = "[queues.default]\nconcurrency = 1000000\n";
        builder = builder.config(kairos::config::Config::parse(toml, "bench.toml")?);
    }
    Ok(builder.build().await?)
}

/// `--node`: one of the other nodes of `--nodes`. Says `ready` once built, starts at a
/// `go` line, stops when its standard input closes, and says how many runs it ran.
async fn other_node(a: &Args) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let sched = node(&a.database, a).await?;
    let h = sched.handle();
    println!("ready");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    if lines.next_line().await?.as_deref() != Some("go") {
        return Ok(());
    }
    let run = tokio::spawn(sched.run());
    while lines.next_line().await?.is_some() {}
    h.shutdown();
    run.await??;
    println!("ran {}", DONE.load(Ordering::Relaxed));
    Ok(())
}

/// Another node process, seen from the benchmark.
struct OtherNode {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl OtherNode {
    /// Starts one and waits until it is built (connected, its tasks published).
    async fn start(url: &str, a: &Args) -> anyhow::Result<OtherNode> {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
        cmd.args(["--node", "--database", url, "--task", a.task])
            .args(["--workers", &a.workers.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if a.limited {
            cmd.arg("--limited");
        }
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let line = stdout.next_line().await?;
        anyhow::ensure!(
            line.as_deref() == Some("ready"),
            "another node did not start: {line:?}"
        );
        Ok(OtherNode {
            child,
            stdin,
            stdout,
        })
    }

    async fn go(&mut self) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stdin.write_all(b"go\n").await?;
        Ok(self.stdin.flush().await?)
    }

    /// Stops it; the runs it ran.
    async fn stop(self) -> anyhow::Result<usize> {
        let OtherNode {
            mut child,
            stdin,
            mut stdout,
        } = self;
        drop(stdin);
        let mut ran = 0;
        while let Some(line) = stdout.next_line().await? {
            if let Some(n) = line.strip_prefix("ran ") {
                ran = n.parse()?;
            }
        }
        anyhow::ensure!(child.wait().await?.success(), "another node failed");
        Ok(ran)
    }
}

struct Args {
    database: String,
    runs: usize,
    workers: usize,
    batch: usize,
    task: &'static str,
    enqueuer: bool,
    idle: Option<u64>,
    prefill: u64,
    limited: bool,
    nodes: usize,
    /// This process is one of the other nodes of `--nodes`.
    node: bool,
}

fn args() -> Args {
    let mut a = Args {
        database: "sqlite".into(),
        runs: 20_000,
        workers: 256,
        batch: 1000,
        task: "noop",
        enqueuer: false,
        idle: None,
        prefill: 0,
        limited: false,
        nodes: 1,
        node: false,
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
                    "typed" => "typed",
                    other => panic!("--task {other}: use noop, progress or typed"),
                }
            }
            "--enqueuer" => a.enqueuer = true,
            "--prefill" => a.prefill = val().parse().expect("--prefill N"),
            "--limited" => a.limited = true,
            "--nodes" => {
                a.nodes = val().parse().expect("--nodes N");
                assert!(a.nodes >= 1, "--nodes N: at least 1");
            }
            "--node" => a.node = true,
            "--idle" => a.idle = Some(val().parse().expect("--idle SECONDS")),
            other => panic!(
                "unknown flag {other}; use --database sqlite|URL --runs N --workers N --batch N \
                 --task noop|progress|typed --idle SECONDS --prefill N --limited --nodes N"
            ),
        }
    }
    a
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG=kairos=debug (or sqlx=debug: every statement and its time) on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let a = args();
    if a.enqueuer {
        return enqueuer(&a.database).await;
    }
    if a.node {
        return other_node(&a).await;
    }
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
    let sched = node(&url, &a).await?;
    if a.prefill > 0 {
        let t = Instant::now();
        prefill(&url, a.prefill).await?;
        println!(
            "prefilled {} finished runs in {:.1}s",
            a.prefill,
            t.elapsed().as_secs_f64()
        );
    }
    let mut others = Vec::new();
    for _ in 1..a.nodes {
        others.push(OtherNode::start(&url, &a).await?);
    }
    let h = sched.handle();
    if let Some(secs) = a.idle {
        let run = tokio::spawn(sched.run());
        idle(&url, secs, &h).await?;
        run.await??;
        return Ok(());
    }

    // Phase 1: enqueue in batches, then drain.
    let t = Instant::now();
    let mut left = a.runs;
    while left > 0 {
        let n = left.min(a.batch);
        h.enqueue_many(
            (0..n)
                .map(|i| match a.task {
                    "typed" => Enqueue::new(a.task).params(json!({ "n": i })),
                    _ => Enqueue::new(a.task),
                })
                .collect(),
        )
        .await?;
        left -= n;
    }
    let enqueue_secs = t.elapsed().as_secs_f64();
    let enqueue_rate = a.runs as f64 / enqueue_secs;
    println!(
        "enqueued {} runs in {:.3}s ({:.0}/s)",
        a.runs, enqueue_secs, enqueue_rate
    );

    for other in &mut others {
        other.go().await?;
    }
    let run = tokio::spawn(sched.run());
    let t = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        // With other nodes, only the database knows when all runs are done.
        if others.is_empty() && DONE.load(Ordering::Relaxed) < a.runs {
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
        "completed {} {} runs in {:.3}s ({:.0}/s) on {} node process(es)",
        a.runs, a.task, drain_secs, rate, a.nodes
    );
    if !others.is_empty() {
        let mut shares = vec![DONE.load(Ordering::Relaxed)];
        for other in others {
            shares.push(other.stop().await?);
        }
        println!("runs per node: {shares:?}");
    }

    // Phase 2: enqueue→start latency with idle workers.
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

    // Phase 3: enqueued by another process.
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(["--enqueuer", "--database", &url])
        .status()?;
    anyhow::ensure!(status.success(), "the enqueuer process failed");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut remote = REMOTE.lock().unwrap().clone();
    remote.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rpct = |p: f64| {
        remote
            .get(((remote.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "start latency of {} runs enqueued by another process: p50 {:.3} ms, p99 {:.3} ms",
        remote.len(),
        rpct(0.5),
        rpct(0.99)
    );

    h.shutdown();
    run.await??;
    println!(
        "runs_per_sec={:.0} enqueue_per_sec={:.0} start_p50_ms={:.3} start_p99_ms={:.3} \
         remote_start_p50_ms={:.3} remote_start_p99_ms={:.3} nodes={}",
        rate,
        enqueue_rate,
        pct(0.5),
        pct(0.99),
        rpct(0.5),
        rpct(0.99),
        a.nodes
    );
    Ok(())
}
