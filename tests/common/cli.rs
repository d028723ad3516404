//! The plumbing of the `tests/cli_*.rs` tests, which run the `kairos` binary as a user
//! does, often against a node running in the test process.
//!
//! This module owns:
//! - [`Output`], what one invocation did, with the checks every file makes of it
//!   ([`Output::ok`], [`Output::fails`], [`Output::json`]);
//! - the runners: [`Kairos`] (one invocation, with its database, working folder and
//!   environment), blocking [`kairos`], [`kairos_env`], [`kairos_in`] and [`at_once`],
//!   and async [`cli`], [`cli_with_config`], [`cli_json`], [`cli_at_once`] and
//!   [`enqueue`], which run the binary off the async runtime so a node in the same
//!   process keeps running;
//! - [`Node`], a real-clock node (built by [`node_builder`]), and the small tasks such
//!   nodes run ([`hello`], [`noop`], [`blocks`], [`fails`]).
//!
//! What a test file checks, and which tasks its node runs, stay in that file.
//!
//! Every invocation starts clean: none of the caller's `KAIROS_DATABASE_URL`,
//! `RUST_LOG` or `RUST_BACKTRACE`, and a fresh empty working folder unless one is given.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kairos::config::Config;
use kairos::task::TaskOutcome;
use kairos::{
    Admin, Registry, RunFilter, Scheduler, SchedulerBuilder, SchedulerHandle, TaskContext,
    TaskError,
};
use serde_json::Value;

// ---------------------------------------------------------------------------------
// What an invocation did

/// What one `kairos` invocation did, and how long it took.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Output {
    /// Asserts exit status 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }

    /// Asserts exit status 1, nothing on stdout and a one-line `error:` on stderr.
    #[track_caller]
    pub fn assert_fails(&self) {
        assert_eq!(self.code, 1, "expected an error: {self:#?}");
        assert!(self.stdout.is_empty(), "{self:#?}");
        assert!(self.stderr.starts_with("error: "), "{self:#?}");
        assert_eq!(self.stderr.trim_end().lines().count(), 1, "{self:#?}");
    }

    /// [`Output::assert_fails`], then the error line.
    #[track_caller]
    pub fn fails(self) -> String {
        self.assert_fails();
        self.stderr
    }

    /// stdout parsed as JSON (fails the test with the output when it is not).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {self:#?}"))
    }

    /// `(code, stdout, stderr)`.
    pub fn into_parts(self) -> (i32, String, String) {
        (self.code, self.stdout, self.stderr)
    }
}

// ---------------------------------------------------------------------------------
// Running the binary

/// One `kairos` invocation: its arguments, database, working folder and environment.
#[derive(Debug, Clone, Default)]
pub struct Kairos {
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: Option<PathBuf>,
    jobs_toml: Option<String>,
}

impl Kairos {
    /// `kairos ARGS` with no database configured, from a fresh empty folder.
    pub fn new<S: AsRef<str>>(args: &[S]) -> Self {
        Kairos {
            args: args.iter().map(|a| a.as_ref().to_string()).collect(),
            ..Kairos::default()
        }
    }

    /// The database in `KAIROS_DATABASE_URL`.
    pub fn url(self, url: &str) -> Self {
        self.env("KAIROS_DATABASE_URL", url)
    }

    /// The database as `--database-url URL`, ahead of the arguments.
    pub fn url_flag(mut self, url: &str) -> Self {
        self.args
            .splice(0..0, ["--database-url".to_string(), url.to_string()]);
        self
    }

    /// Sets the environment variable `key`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs in `dir` rather than a fresh empty folder.
    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Writes a `jobs.toml` with `text` in the working folder first.
    pub fn jobs_toml(mut self, text: &str) -> Self {
        self.jobs_toml = Some(text.to_string());
        self
    }

    /// Runs it, blocking until it exits.
    pub fn run(&self) -> Output {
        self.run_after(None)
    }

    /// [`Kairos::run`] off the async runtime.
    pub async fn spawn(self) -> Output {
        tokio::task::spawn_blocking(move || self.run())
            .await
            .expect("kairos thread")
    }

    /// Runs it once every thread waiting on `start` is ready, if given.
    fn run_after(&self, start: Option<&Barrier>) -> Output {
        let fresh;
        let dir = match &self.dir {
            Some(dir) => dir.as_path(),
            None => {
                fresh = tempfile::tempdir().expect("a working folder");
                fresh.path()
            }
        };
        if let Some(text) = &self.jobs_toml {
            std::fs::write(dir.join("jobs.toml"), text).expect("write jobs.toml");
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kairos"));
        cmd.args(&self.args)
            .env_remove("KAIROS_DATABASE_URL")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .envs(self.env.clone())
            .current_dir(dir);
        if let Some(start) = start {
            start.wait();
        }
        let started = Instant::now();
        let out = cmd.output().expect("run kairos");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: started.elapsed(),
        }
    }
}

/// Runs `kairos ARGS` against `url` from an empty working folder.
pub fn kairos(url: &str, args: &[&str]) -> Output {
    Kairos::new(args).url(url).run()
}

/// [`kairos`] with the environment variables `env` set.
pub fn kairos_env(url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut k = Kairos::new(args).url(url);
    for (key, value) in env {
        k = k.env(key, value);
    }
    k.run()
}

/// Runs `kairos ARGS` in `dir` with no database configured but what `args` say.
pub fn kairos_in(dir: &Path, args: &[&str]) -> Output {
    Kairos::new(args).dir(dir).run()
}

/// Starts every one of `each` at the same moment, each on its own thread, and returns
/// their outputs in order.
pub fn at_once(each: Vec<Kairos>) -> Vec<Output> {
    let start = Arc::new(Barrier::new(each.len()));
    let threads: Vec<_> = each
        .into_iter()
        .map(|k| {
            let start = start.clone();
            std::thread::spawn(move || k.run_after(Some(&start)))
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("kairos thread"))
        .collect()
}

/// [`kairos`] off the async runtime, so a node in this process keeps running.
pub async fn cli(url: &str, args: &[&str]) -> Output {
    Kairos::new(args).url(url).spawn().await
}

/// [`cli`] from a folder holding a `jobs.toml` with `config`, if given.
pub async fn cli_with_config(url: &str, config: Option<&str>, args: &[&str]) -> Output {
    let k = Kairos::new(args).url(url);
    match config {
        Some(text) => k.jobs_toml(text),
        None => k,
    }
    .spawn()
    .await
}

/// `kairos ARGS --json`, expected to succeed with nothing on stderr: its JSON.
pub async fn cli_json(url: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = cli(url, &args).await.ok();
    assert!(out.stderr.is_empty(), "nothing on stderr: {out:#?}");
    out.json()
}

/// [`at_once`] against `url`, one process per argument list, each from an empty
/// working folder, off the async runtime.
pub async fn cli_at_once(url: &str, each: Vec<Vec<String>>) -> Vec<Output> {
    let each = each.iter().map(|args| Kairos::new(args).url(url)).collect();
    tokio::task::spawn_blocking(move || at_once(each))
        .await
        .expect("kairos threads")
}

/// `kairos enqueue ARGS --json`, expected to succeed: the new run's id.
pub async fn enqueue(url: &str, args: &[&str]) -> i64 {
    let mut all = vec!["enqueue"];
    all.extend_from_slice(args);
    all.push("--json");
    cli(url, &all).await.ok().json()["id"]
        .as_i64()
        .expect("a run id")
}

// ---------------------------------------------------------------------------------
// A node

/// Returns its params as its result.
pub fn hello(_: TaskContext, p: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move { Ok(Some(p)) })
}

/// Does nothing.
pub fn noop(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async { Ok(None) })
}

/// Runs until cancelled.
pub fn blocks(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        ctx.cancelled().await;
        Ok(None)
    })
}

/// Fails every attempt with `attempt N failed`.
pub fn fails(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        Err(TaskError::Failed(format!(
            "attempt {} failed",
            ctx.attempt()
        )))
    })
}

/// A node's builder: on `url`, running exactly `registry`, with `jobs_toml` as its
/// configuration when given (else the default one), and a 200 ms shutdown grace.
pub fn node_builder(url: &str, registry: Registry, jobs_toml: Option<&str>) -> SchedulerBuilder {
    let builder = Scheduler::builder()
        .database_url(url)
        .registry(registry)
        .shutdown_grace(Duration::from_millis(200));
    match jobs_toml {
        Some(text) => builder.config(Config::parse(text, "jobs.toml").expect("a valid jobs.toml")),
        None => builder,
    }
}

/// A node running on the real clock in this process.
pub struct Node {
    pub handle: SchedulerHandle,
    pub admin: Admin,
    pub id: String,
    join: tokio::task::JoinHandle<Result<(), kairos::Error>>,
}

impl Node {
    /// Builds a node with [`node_builder`] and runs it.
    pub async fn start(url: &str, registry: Registry, jobs_toml: Option<&str>) -> Node {
        Node::start_with(url, node_builder(url, registry, jobs_toml)).await
    }

    /// Builds a node from `builder` (on `url`) and runs it.
    pub async fn start_with(url: &str, builder: SchedulerBuilder) -> Node {
        Node::run(url, builder.build().await.expect("build the node")).await
    }

    /// Runs `sched`, a node built on `url`.
    pub async fn run(url: &str, sched: Scheduler) -> Node {
        let handle = sched.handle();
        let id = sched.node_id().to_string();
        let join = tokio::spawn(sched.run());
        let admin = Admin::connect(url).await.expect("connect");
        Node {
            handle,
            admin,
            id,
            join,
        }
    }

    /// Shuts the node down and waits until it has stopped.
    pub async fn stop(self) {
        self.handle.shutdown();
        self.join.await.unwrap().unwrap();
    }

    /// How many runs the database holds.
    pub async fn total_runs(&self) -> u64 {
        self.admin.runs(&RunFilter::new()).await.unwrap().total
    }
}
