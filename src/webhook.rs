//! Webhooks: when a run with a `callback_url` ends for good (succeeded, failed,
//! timed out, cancelled, expired; not when an attempt is retried), a node POSTs the
//! finished run to that URL as JSON, retries with backoff until the receiver answers
//! 2xx, and records every attempt in `kairos_deliveries` (shown by `kairos runs show`
//! and [`Admin::deliveries`]).
//!
//! This module owns the delivery worker, the request (headers and signature), the retry
//! schedule, the [`RunDelivery`] record and the settings (`[webhooks]` in `jobs.toml`,
//! or the builder's `webhook_*` methods). The completer only hands it the attempts it
//! just stored; the queries live in `store::deliveries`.
//!
//! # Which node delivers
//! - A run ended by an attempt's outcome is delivered by the node whose completer
//!   stored it, at once (the completer hands over the attempts it wrote; the worker
//!   asks the database which ended a run that has a callback URL, fenced on node and
//!   attempt).
//! - A run that ended without an outcome (a queued run that expired or that an
//!   operator cancelled, possibly from the CLI; a run whose node died during its final
//!   attempt) is found by a sweep every node makes each maintenance interval (10 s by
//!   default) over runs finished recently. The first node to record the first attempt
//!   as "in progress", in a transaction that checks that none is recorded yet, delivers
//!   it; the others skip it. A starting node looks back an hour.
//!
//! # The request
//! `POST <callback_url>` with the body `serde_json::to_vec(&run)` of the [`Run`] read
//! back after its outcome was stored, i.e. what `kairos runs show ID --json` prints
//! without the `deliveries`. The same bytes are sent on every attempt. Headers:
//!
//! | header | value |
//! |---|---|
//! | `Content-Type` | `application/json` |
//! | `User-Agent` | `kairos/<version>` |
//! | `X-Kairos-Run-Id` | the run's id |
//! | `X-Kairos-Delivery` | the attempt number of this delivery: 1, 2, ... |
//! | `X-Kairos-Timestamp` | when this attempt was sent, in Unix seconds |
//! | `X-Kairos-Signature` | `sha256=<hex>`, only when a secret is configured |
//!
//! Redirects are not followed (a 3xx counts as a failure): a redirected POST would
//! silently become a GET.
//!
//! # The signature
//! `<hex>` is the lowercase hex HMAC-SHA256, keyed with the secret's UTF-8 bytes, of
//!
//! ```text
//! <X-Kairos-Timestamp> "." <the exact body bytes>
//! ```
//!
//! e.g. `1764367200.{"id":42,...}`. A receiver recomputes it over the raw body (before
//! any JSON parsing), compares in constant time ([`verify`] does both), and rejects
//! timestamps too far from its own clock (five minutes is usual) so that a captured
//! request cannot be replayed later. Each attempt is signed afresh with its own
//! timestamp.
//!
//! # Retries
//! A network error, no response within `timeout` (10 s by default; connecting
//! included) or a status other than 2xx fails the attempt. Up to `max_attempts` (5)
//! attempts are made, waiting `retry_delay` (1 s) after the first failure and doubling
//! after each further one (capped at an hour). Each attempt is a row in
//! `kairos_deliveries`: url, attempt number, time, status code or error, delivered.
//!
//! # Never in the way
//! The completer hands over finished attempts through a bounded channel without
//! waiting: when the worker falls that far behind, the batch is logged and dropped
//! rather than slowing the completer down. Requests run on their own tasks, at most
//! [`CONCURRENT_REQUESTS`] at once per node; the run's outcome is stored before any of
//! this starts, so a receiver that fails, hangs or refuses changes nothing about it.
//!
//! # Known limits
//! - Pending redeliveries live in memory, not in the database: a node that stops (or
//!   crashes) while a delivery waits for its next attempt loses that redelivery, and a
//!   crash between storing an outcome and the first attempt loses the delivery (a
//!   claimed one then stays "in progress"). Attempts already made stay recorded, so
//!   `runs show` tells what was tried. At a graceful stop the node lets attempts in
//!   flight finish within `timeout` and what is left of the shutdown grace period (at
//!   least half a second), and logs each redelivery it gives up, and the attempts it
//!   abandons under way (which are not recorded), by run and attempt.
//! - Delivery is at least once: a receiver that took too long to answer 2xx may get the
//!   same run again. `X-Kairos-Run-Id` with the body's `finished_at` identifies a
//!   finish (a run retried by an operator and finished again is delivered again).
//! - Backoff waits and timeouts are real time, not the scheduler's [`Clock`]: they pace
//!   a remote server. Recorded times and `X-Kairos-Timestamp` come from the clock.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::WebhookConfig;
use crate::store::Store;
#[cfg(doc)]
use crate::{Admin, Run};

/// The header with the run's id.
pub const RUN_ID_HEADER: &str = "X-Kairos-Run-Id";
/// The header with the delivery attempt's number (1 for the first).
pub const DELIVERY_HEADER: &str = "X-Kairos-Delivery";
/// The header with the Unix time (seconds) the attempt was sent and signed.
pub const TIMESTAMP_HEADER: &str = "X-Kairos-Timestamp";
/// The header with `sha256=<hex HMAC>`, when a secret is configured.
pub const SIGNATURE_HEADER: &str = "X-Kairos-Signature";
/// The environment variable holding the signing secret; it wins over
/// `[webhooks] secret` (the builder's `webhook_secret` wins over both).
pub const SECRET_ENV: &str = "KAIROS_WEBHOOK_SECRET";

/// Default limit of one delivery attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of attempts, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default wait after the first failed attempt (doubling after each further one).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The most attempts a configuration may ask for.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// HTTP requests a node has in flight at most; further deliveries wait their turn.
pub const CONCURRENT_REQUESTS: usize = 32;

/// The error of an attempt claimed by a sweep and not finished yet; it stays if the
/// node stopped during the attempt.
pub(crate) const IN_PROGRESS: &str = "in progress (no outcome recorded yet)";
/// The longest wait between two attempts.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(3600);
/// Batches of finished attempts the completer may have handed over unread.
const CHANNEL_BATCHES: usize = 1024;
/// Deliveries (waiting, in flight, or between attempts) a node keeps at most; beyond,
/// new ones are recorded as not attempted.
const MAX_PENDING: usize = 10_000;
/// How far back a starting node looks for runs that ended outside a completer.
const ORPHAN_LOOKBACK: chrono::Duration = chrono::Duration::hours(1);
/// How far before the previous sweep the next one looks again: a finish written by
/// another process with a slightly slower clock, or committed late, is not missed.
const SWEEP_MARGIN: chrono::Duration = chrono::Duration::minutes(1);
/// Characters of a failed response's body kept in the recorded error.
const BODY_EXCERPT: usize = 200;

/// One delivery attempt of a run's webhook, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RunDelivery {
    /// The run delivered.
    pub run_id: i64,
    /// The attempt's number, from 1 (sent as `X-Kairos-Delivery`).
    pub attempt: u32,
    /// When the attempt was sent.
    pub at: DateTime<Utc>,
    /// Where it was POSTed.
    pub url: String,
    /// The HTTP status the receiver answered, if it answered.
    pub status_code: Option<u16>,
    /// Why the attempt failed: the status and the start of the response body, a
    /// timeout, or a network error.
    pub error: Option<String>,
    /// Whether the receiver answered 2xx.
    pub delivered: bool,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Kairos-Signature` value of `body` sent at `timestamp` (Unix seconds):
/// `sha256=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let code = mac(secret, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    let mut out = String::with_capacity(7 + 2 * code.len());
    out.push_str("sha256=");
    for b in code.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Whether `signature` (the `X-Kairos-Signature` header) signs `body` with the
/// `timestamp` header's value under `secret`, compared in constant time. The caller
/// still checks that the timestamp is recent.
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(code) = decode_hex(hex) else {
        return false;
    };
    mac(secret, timestamp.trim(), body)
        .verify_slice(&code)
        .is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// The wait before attempt `failed + 1`, after `failed` failed attempts:
/// `base * 2^(failed - 1)`, at most an hour.
pub(crate) fn backoff(base: Duration, failed: u32) -> Duration {
    let factor = 2u32.saturating_pow(failed.saturating_sub(1));
    base.saturating_mul(factor).min(MAX_RETRY_WAIT)
}

/// The settings a node delivers with.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct WebhookSettings {
    pub(crate) secret: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) retry_delay: Duration,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("retry_delay", &self.retry_delay)
            .finish()
    }
}

impl WebhookSettings {
    /// The builder's values over the environment's secret over the file's, over the
    /// defaults; an error says which value is out of range.
    pub(crate) fn resolve(
        builder: &WebhookConfig,
        env_secret: Option<String>,
        file: &WebhookConfig,
    ) -> Result<WebhookSettings, String> {
        let secret = builder
            .secret
            .clone()
            .or(env_secret.filter(|s| !s.is_empty()))
            .or_else(|| file.secret.clone());
        let s = WebhookSettings {
            secret: secret.filter(|s| !s.is_empty()),
            timeout: builder.timeout.or(file.timeout).unwrap_or(DEFAULT_TIMEOUT),
            max_attempts: builder
                .max_attempts
                .or(file.max_attempts)
                .unwrap_or(DEFAULT_MAX_ATTEMPTS),
            retry_delay: builder
                .retry_delay
                .or(file.retry_delay)
                .unwrap_or(DEFAULT_RETRY_DELAY),
        };
        if s.timeout.is_zero() {
            return Err("webhook timeout = 0s: use a positive duration such as 10s".into());
        }
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&s.max_attempts) {
            return Err(format!(
                "webhook max_attempts = {}: use 1 (no retries) to {MAX_ATTEMPTS_LIMIT}",
                s.max_attempts
            ));
        }
        Ok(s)
    }
}

/// Finished attempts on their way to the worker: (run id, attempt).
type Batch = Vec<(i64, u32)>;

/// A node's webhook state, on its `Shared`: where the completer hands finished attempts,
/// and the settings the worker starts with.
#[derive(Debug)]
pub(crate) struct Webhooks {
    settings: WebhookSettings,
    tx: mpsc::Sender<Batch>,
    /// Taken by the worker when the node runs.
    rx: Mutex<Option<mpsc::Receiver<Batch>>>,
}

impl Webhooks {
    pub(crate) fn new(settings: WebhookSettings) -> Webhooks {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        Webhooks {
            settings,
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Hands over attempts the completer just stored that may have ended their run
    /// (the worker asks the database which did, and which have a callback URL). Never
    /// waits: when the worker is that far behind, the batch is dropped with a warning.
    pub(crate) fn finished(&self, ended: Batch) {
        if ended.is_empty() {
            return;
        }
        match self.tx.try_send(ended) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(b)) => tracing::warn!(
                runs = b.len(),
                "webhook worker is behind: finished runs dropped without checking for a callback_url"
            ),
            // No worker (the node is not running): nothing to deliver with.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Starts the worker of the node `node`; `None` if it was started before. It looks
    /// for runs that ended outside a completer every `sweep_every` (the node's
    /// maintenance interval, when such runs expire); at stop, attempts in flight get at
    /// most `shutdown_grace` to finish.
    pub(crate) fn start(
        &self,
        store: Store,
        node: String,
        clock: Arc<dyn Clock>,
        sweep_every: Duration,
        shutdown_grace: Duration,
    ) -> Option<Worker> {
        let rx = self.rx.lock().ok()?.take()?;
        let stop = CancellationToken::new();
        let in_flight = InFlightMap::default();
        let ctx = Arc::new(Ctx {
            store,
            node,
            clock,
            settings: self.settings.clone(),
            client: OnceLock::new(),
            requests: Semaphore::new(CONCURRENT_REQUESTS),
            stop: stop.clone(),
            in_flight: in_flight.clone(),
        });
        // An attempt in flight ends within the request timeout; the node's grace
        // period bounds the wait all the same.
        let grace = (self.settings.timeout + Duration::from_millis(500)).min(shutdown_grace);
        Some(Worker {
            task: tokio::spawn(work(ctx, rx, sweep_every, grace)),
            stop,
            grace,
            in_flight,
        })
    }
}

/// The running worker; [`Worker::stop`] ends it.
#[derive(Debug)]
pub(crate) struct Worker {
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
    grace: Duration,
    in_flight: InFlightMap,
}

/// The attempts whose POST is under way, run id → attempt: named when a stopping node
/// abandons them, since they are never recorded.
type InFlightMap = Arc<std::sync::Mutex<std::collections::BTreeMap<i64, u32>>>;

/// The attempts under way, as `run 42 attempt 3` items, for a log line.
fn under_way(map: &InFlightMap) -> Vec<String> {
    map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(run, attempt)| format!("run {run} attempt {attempt}"))
        .collect()
}

impl Worker {
    /// Stops the worker once the completer has written its last outcomes: batches
    /// already handed over still get their first attempt and attempts in flight may
    /// finish (within the request timeout and the shutdown grace period); pending
    /// redeliveries are dropped with a warning. Whatever is still in flight at
    /// `deadline` (what remains of the node's grace period) is abandoned, so webhooks
    /// never stretch a shutdown past it.
    pub(crate) async fn stop(self, deadline: tokio::time::Instant) {
        self.stop.cancel();
        let mut task = self.task;
        let own = tokio::time::Instant::now() + self.grace + Duration::from_secs(1);
        if tokio::time::timeout_at(deadline.min(own), &mut task)
            .await
            .is_err()
        {
            // Dropping the worker's task drops its deliveries with it.
            tracing::warn!(
                in_flight = ?under_way(&self.in_flight),
                "node stopping: webhook deliveries still in flight at the end of the grace \
                 period were abandoned (their attempts under way are not recorded)"
            );
            task.abort();
        }
    }
}

/// What the worker and its deliveries share.
struct Ctx {
    store: Store,
    node: String,
    clock: Arc<dyn Clock>,
    settings: WebhookSettings,
    /// Built at the first delivery: a node that never delivers never loads the
    /// system's certificates.
    client: OnceLock<Result<reqwest::Client, String>>,
    requests: Semaphore,
    stop: CancellationToken,
    /// The attempts whose POST is under way (see `InFlightMap`).
    in_flight: InFlightMap,
}

/// Marks an attempt's POST as under way for as long as it lives (see `InFlightMap`).
struct InFlight<'a>(&'a InFlightMap, i64);

impl<'a> InFlight<'a> {
    fn new(map: &'a InFlightMap, run_id: i64, attempt: u32) -> Self {
        map.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run_id, attempt);
        InFlight(map, run_id)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

impl Ctx {
    fn client(&self) -> Result<&reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .user_agent(concat!("kairos/", env!("CARGO_PKG_VERSION")))
                    .timeout(self.settings.timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("cannot set up the HTTP client: {}", chain(&e)))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

async fn work(
    ctx: Arc<Ctx>,
    mut rx: mpsc::Receiver<Batch>,
    sweep_every: Duration,
    grace: Duration,
) {
    let mut pending = JoinSet::new();
    let mut sweep = tokio::time::interval(sweep_every.max(Duration::from_millis(10)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // At start, runs that ended while no node ran (a CLI cancel) are looked for this
    // far back; afterwards since shortly before the previous sweep.
    let mut since = ctx.clock.now() - ORPHAN_LOOKBACK;
    loop {
        tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => break,
            _ = sweep.tick() => sweep_orphans(&ctx, &mut since, &mut pending).await,
            Some(done) = pending.join_next(), if !pending.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!("a webhook delivery panicked");
                }
            }
            batch = rx.recv() => match batch {
                Some(b) => take(&ctx, &mut rx, b, &mut pending).await,
                None => break,
            },
        }
    }
    // Stopping: what the completer handed over last still gets its first attempt.
    while let Ok(b) = rx.try_recv() {
        take(&ctx, &mut rx, b, &mut pending).await;
    }
    let finish = async { while pending.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, finish).await.is_err() {
        tracing::warn!(
            deliveries = pending.len(),
            in_flight = ?under_way(&ctx.in_flight),
            "node stopping: webhook deliveries still in flight were abandoned (their \
             attempts under way are not recorded)"
        );
        pending.abort_all();
    }
}

/// Claims runs that ended without an attempt outcome (expired, cancelled while queued,
/// lost with their node) and starts their deliveries; see
/// `Store::claim_orphan_webhooks`.
async fn sweep_orphans(ctx: &Arc<Ctx>, since: &mut DateTime<Utc>, pending: &mut JoinSet<()>) {
    const LIMIT: u64 = 500;
    if pending.len() >= MAX_PENDING {
        // Unclaimed runs wait for a later sweep.
        return;
    }
    let now = ctx.clock.now();
    match ctx.store.claim_orphan_webhooks(*since, now, LIMIT).await {
        Ok(claimed) => {
            // A full page means more wait: look from the same point next time.
            if (claimed.len() as u64) < LIMIT {
                *since = (*since).max(now - SWEEP_MARGIN);
            }
            for (run_id, row) in claimed {
                pending.spawn(deliver(ctx.clone(), run_id, Some(row)));
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot look for finished runs to deliver"),
    }
}

/// Finds which of the attempts in `first` (and whatever else is queued) ended a run
/// that has a callback URL, and starts a delivery for each.
async fn take(
    ctx: &Arc<Ctx>,
    rx: &mut mpsc::Receiver<Batch>,
    first: Batch,
    pending: &mut JoinSet<()>,
) {
    // Under load, many small batches wait: one query serves them all.
    let mut ended = first;
    while ended.len() < 4096 {
        match rx.try_recv() {
            Ok(more) => ended.extend(more),
            Err(_) => break,
        }
    }
    let mut wait = Duration::from_millis(50);
    let ids = loop {
        match ctx.store.webhook_runs(&ctx.node, &ended).await {
            Ok(ids) => break ids,
            Err(e) if wait < Duration::from_secs(2) && !ctx.stop.is_cancelled() => {
                tracing::warn!(error = %e, "cannot look up webhooks of finished runs; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => {
                tracing::error!(error = %e, runs = ended.len(), "cannot look up webhooks of finished runs; not delivered");
                return;
            }
        }
    };
    for run_id in ids {
        if pending.len() >= MAX_PENDING {
            let at = ctx.clock.now();
            let error = format!(
                "not attempted: {MAX_PENDING} webhook deliveries were already pending on this node"
            );
            tracing::warn!(run_id, "{error}");
            let url = match ctx.store.run(run_id).await {
                Ok(Some(r)) => r.callback_url.unwrap_or_default(),
                _ => String::new(),
            };
            record(
                ctx,
                RunDelivery {
                    run_id,
                    attempt: 1,
                    at,
                    url,
                    status_code: None,
                    error: Some(error),
                    delivered: false,
                },
                None,
            )
            .await;
            continue;
        }
        pending.spawn(deliver(ctx.clone(), run_id, None));
    }
}

/// Delivers one finished run: up to `max_attempts` POSTs, recording each. `claimed`
/// is the row of its first attempt when a sweep claimed it (recorded as in progress).
async fn deliver(ctx: Arc<Ctx>, run_id: i64, claimed: Option<i64>) {
    let run = match ctx.store.run(run_id).await {
        Ok(run) => run,
        Err(e) => {
            tracing::error!(run_id, error = %e, "cannot read the finished run; webhook not delivered");
            None
        }
    };
    // Deleted meanwhile (or unreadable): nothing left to tell.
    let Some((run, url)) = run.and_then(|r| r.callback_url.clone().map(|u| (r, u))) else {
        if let Some(row) = claimed {
            let _ = ctx
                .store
                .complete_delivery(row, &not_sent(&ctx, run_id, "the run could not be read"))
                .await;
        }
        return;
    };
    let body = match serde_json::to_vec(&run) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(run_id, error = %e, "cannot serialize the run; webhook not delivered");
            return;
        }
    };
    let max = ctx.settings.max_attempts;
    for attempt in 1..=max {
        let (at, outcome) = {
            let _turn = ctx.requests.acquire().await;
            let _in_flight = InFlight::new(&ctx.in_flight, run_id, attempt);
            let at = ctx.clock.now();
            (at, post(&ctx, &url, run_id, attempt, at, &body).await)
        };
        let (status_code, error) = match &outcome {
            Ok(code) => (Some(*code), None),
            Err((code, e)) => (*code, Some(e.clone())),
        };
        let row = claimed.filter(|_| attempt == 1);
        record(
            &ctx,
            RunDelivery {
                run_id,
                attempt,
                at,
                url: url.clone(),
                status_code,
                error: error.clone(),
                delivered: outcome.is_ok(),
            },
            row,
        )
        .await;
        let Some(error) = error else {
            tracing::debug!(run_id, attempt, "webhook delivered");
            return;
        };
        if attempt == max {
            tracing::warn!(run_id, attempts = max, %error, "webhook not delivered; giving up");
            return;
        }
        let wait = backoff(ctx.settings.retry_delay, attempt);
        tracing::info!(run_id, attempt, %error, retry_in = ?wait, "webhook delivery failed; will retry");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.stop.cancelled() => {
                tracing::warn!(
                    run_id,
                    next_attempt = attempt + 1,
                    "node stopping: pending webhook redelivery dropped"
                );
                return;
            }
        }
    }
}

/// One POST. `Ok(status)` on 2xx; otherwise the status, if any, and why it failed.
async fn post(
    ctx: &Ctx,
    url: &str,
    run_id: i64,
    attempt: u32,
    at: DateTime<Utc>,
    body: &[u8],
) -> Result<u16, (Option<u16>, String)> {
    let client = ctx.client().map_err(|e| (None, e))?;
    let timestamp = at.timestamp();
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(RUN_ID_HEADER, run_id.to_string())
        .header(DELIVERY_HEADER, attempt.to_string())
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .body(body.to_vec());
    if let Some(secret) = &ctx.settings.secret {
        req = req.header(SIGNATURE_HEADER, sign(secret.as_bytes(), timestamp, body));
    }
    let resp = req
        .send()
        .await
        .map_err(|e| (None, describe(&e, ctx.settings.timeout)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(status.as_u16());
    }
    let mut error = format!("HTTP {status}");
    if status.is_redirection() {
        error.push_str(" (redirects are not followed; use the final URL)");
    }
    // The start of the body usually says why; the request timeout bounds the read.
    if let Ok(text) = resp.text().await {
        let text = text.trim();
        if !text.is_empty() {
            let excerpt: String = text.chars().take(BODY_EXCERPT).collect();
            error.push_str(": ");
            error.push_str(&excerpt);
            if excerpt.len() < text.len() {
                error.push_str("...");
            }
        }
    }
    Err((Some(status.as_u16()), error))
}

/// A request error in words.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!(
            "no response within {} (the request timeout)",
            crate::schedule::format_duration(timeout)
        );
    }
    if e.is_connect() {
        // The innermost cause says it (refused, unknown host, certificate); the layers
        // above it only repeat "connect error".
        let mut inner: &dyn std::error::Error = e;
        while let Some(c) = inner.source() {
            inner = c;
        }
        let host = e
            .url()
            .and_then(|u| {
                Some(format!(
                    " to {}:{}",
                    u.host_str()?,
                    u.port_or_known_default()?
                ))
            })
            .unwrap_or_default();
        return format!("cannot connect{host}: {inner}");
    }
    chain(e)
}

/// The messages of `e`'s causes, outermost first, without repeats; the outermost
/// (which only names the URL) is dropped when there are causes.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = c.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// A delivery that was claimed but never sent.
fn not_sent(ctx: &Ctx, run_id: i64, why: &str) -> RunDelivery {
    RunDelivery {
        run_id,
        attempt: 1,
        at: ctx.clock.now(),
        url: String::new(),
        status_code: None,
        error: Some(format!("not sent: {why}")),
        delivered: false,
    }
}

/// Stores one attempt (completing the claimed `row`, if given); a failure to store is
/// logged (the delivery itself stands).
async fn record(ctx: &Ctx, d: RunDelivery, row: Option<i64>) {
    let mut wait = Duration::from_millis(50);
    loop {
        let stored = match row {
            Some(row) => ctx.store.complete_delivery(row, &d).await,
            None => ctx.store.add_delivery(&d).await,
        };
        match stored {
            Ok(()) => return,
            Err(e) if wait < Duration::from_secs(2) => {
                tracing::warn!(run_id = d.run_id, error = %e, "cannot record a webhook delivery; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => {
                tracing::error!(run_id = d.run_id, attempt = d.attempt, delivered = d.delivered, error = %e,
                    "cannot record a webhook delivery");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_under_way_are_named_while_their_post_lasts() {
        let map = InFlightMap::default();
        let first = InFlight::new(&map, 42, 3);
        {
            let _second = InFlight::new(&map, 7, 1);
            assert_eq!(under_way(&map), ["run 7 attempt 1", "run 42 attempt 3"]);
        }
        assert_eq!(under_way(&map), ["run 42 attempt 3"]);
        drop(first);
        assert!(under_way(&map).is_empty());
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signature_covers_timestamp_dot_body() {
        let body = br#"{"id":42}"#;
        let mut mac = HmacSha256::new_from_slice(b"s3cret").unwrap();
        mac.update(br#"1764367200.{"id":42}"#);
        let expected = format!("sha256={}", hex(&mac.finalize().into_bytes()));
        assert_eq!(sign(b"s3cret", 1_764_367_200, body), expected);
        assert!(verify(b"s3cret", "1764367200", body, &expected));
        assert!(verify(
            b"s3cret",
            "1764367200",
            body,
            &expected.to_uppercase().replace("SHA256=", "sha256=")
        ));
        // Another body, timestamp, secret or a malformed header fails.
        assert!(!verify(b"s3cret", "1764367200", br#"{"id":43}"#, &expected));
        assert!(!verify(b"s3cret", "1764367201", body, &expected));
        assert!(!verify(b"other", "1764367200", body, &expected));
        assert!(!verify(b"s3cret", "1764367200", body, "sha256=zz"));
        assert!(!verify(b"s3cret", "1764367200", body, &expected[7..]));
    }

    #[test]
    fn backoff_doubles_from_the_base_and_is_capped() {
        let base = Duration::from_secs(1);
        let waits: Vec<u64> = (1..=5).map(|n| backoff(base, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16]);
        assert_eq!(backoff(base, 40), MAX_RETRY_WAIT);
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn settings_take_builder_then_environment_then_file() {
        let file = WebhookConfig {
            secret: Some("file".into()),
            timeout: Some(Duration::from_secs(3)),
            max_attempts: Some(2),
            retry_delay: None,
        };
        let none = WebhookConfig::default();
        let s = WebhookSettings::resolve(&none, None, &file).unwrap();
        assert_eq!(s.secret.as_deref(), Some("file"));
        assert_eq!(
            (s.timeout, s.max_attempts, s.retry_delay),
            (Duration::from_secs(3), 2, DEFAULT_RETRY_DELAY)
        );
        let s = WebhookSettings::resolve(&none, Some("env".into()), &file).unwrap();
        assert_eq!(s.secret.as_deref(), Some("env"));
        let builder = WebhookConfig {
            secret: Some("builder".into()),
            max_attempts: Some(7),
            ..WebhookConfig::default()
        };
        let s = WebhookSettings::resolve(&builder, Some("env".into()), &file).unwrap();
        assert_eq!((s.secret.as_deref(), s.max_attempts), (Some("builder"), 7));
        let s = WebhookSettings::resolve(&none, None, &none).unwrap();
        assert_eq!(
            (s.secret, s.timeout, s.max_attempts, s.retry_delay),
            (
                None,
                DEFAULT_TIMEOUT,
                DEFAULT_MAX_ATTEMPTS,
                DEFAULT_RETRY_DELAY
            )
        );
        let zero = WebhookConfig {
            max_attempts: Some(0),
            ..WebhookConfig::default()
        };
        assert!(WebhookSettings::resolve(&zero, None, &none).is_err());
        let zero = WebhookConfig {
            timeout: Some(Duration::ZERO),
            ..WebhookConfig::default()
        };
        assert!(WebhookSettings::resolve(&zero, None, &none).is_err());
        // The secret never shows in debug output.
        assert!(!format!("{file:?}").contains("file\""));
        assert!(
            !format!(
                "{:?}",
                WebhookSettings::resolve(&builder, None, &none).unwrap()
            )
            .contains("builder")
        );
    }

    #[test]
    fn config_reads_the_webhooks_table() {
        let c = crate::config::Config::parse(
            "[webhooks]\nsecret = \"s3cret\"\ntimeout = \"200ms\"\nmax_attempts = 3\nretry_delay = \"50ms\"\n",
            "jobs.toml",
        )
        .unwrap();
        assert_eq!(
            c.webhooks,
            WebhookConfig {
                secret: Some("s3cret".into()),
                timeout: Some(Duration::from_millis(200)),
                max_attempts: Some(3),
                retry_delay: Some(Duration::from_millis(50)),
            }
        );
        for (text, wanted) in [
            (
                "[webhooks]\nmax_attempts = 0\n",
                "jobs.toml:2:16: `max_attempts` in [webhooks] is 0, out of range: use 1 (no retries) to 100",
            ),
            (
                "[webhooks]\ntimeout = \"0s\"\n",
                "jobs.toml:2:11: `timeout` in [webhooks] must be greater than zero",
            ),
            (
                "[webhooks]\nsecret = \"\"\n",
                "jobs.toml:2:10: `secret` in [webhooks] is empty",
            ),
            (
                "[webhooks]\nretries = 3\n",
                "jobs.toml:2:1: unknown key `retries` in [webhooks]",
            ),
            (
                "webhooks = 1\n",
                "jobs.toml:1:12: `webhooks` must be a table",
            ),
        ] {
            let e = crate::config::Config::parse(text, "jobs.toml")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(wanted), "{e}");
        }
    }
}
