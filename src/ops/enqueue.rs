//! Enqueueing runs: the request builder, the checks at the door (task, params, times,
//! tags, limits of each field) and the insert, one run or a batch in one transaction.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Admin, Check, TaskView, after};
use crate::error::Error;
use crate::model::RunOrigin;
use crate::store::NewRun;

/// Longest tag key, tag value and idempotency key accepted.
const MAX_TAG_KEY: usize = 64;
const MAX_TAG_VALUE: usize = 256;
const MAX_KEY: usize = 256;
/// Most tags on one run.
const MAX_TAGS: usize = 32;
/// Most retries a run may be given.
pub(crate) const MAX_RETRIES: u32 = 10_000;

/// A run to enqueue: `Enqueue::new("task").params(json!({...})).delay(...)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enqueue {
    pub(crate) task: String,
    pub(crate) params: Option<Value>,
    pub(crate) at: Option<DateTime<Utc>>,
    pub(crate) delay: Option<Duration>,
    pub(crate) priority: Option<i32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_retries: Option<u32>,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) callback_url: Option<String>,
}

impl Enqueue {
    /// A run of `task` with no params, as soon as possible.
    pub fn new(task: impl Into<String>) -> Self {
        Enqueue {
            task: task.into(),
            ..Default::default()
        }
    }
    /// The run's params: a JSON object whose keys are the task's parameter names
    /// (`null` counts as no params).
    pub fn params(mut self, params: Value) -> Self {
        self.params = Some(params);
        self
    }
    /// Start no earlier than `at` (a time in the past means now).
    pub fn at(mut self, at: DateTime<Utc>) -> Self {
        self.at = Some(at);
        self
    }
    /// Start no earlier than `delay` from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
    /// Override the task's priority (lower runs first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }
    /// Override the task's timeout for this run.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Override the task's retries for this run.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }
    /// Adds a key/value tag (e.g. `kb_id=42`), to find the run later.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }
    /// While a run with this key is queued or running, enqueueing again with the key
    /// returns that run instead of adding one.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
    /// If the run has not started this long after it is enqueued, it ends `expired`
    /// instead of running late.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// POST the finished run as JSON to this URL (see the webhook docs).
    pub fn callback_url(mut self, url: impl Into<String>) -> Self {
        self.callback_url = Some(url.into());
        self
    }
}

/// The result of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The run's id.
    pub id: i64,
    /// True when an unfinished run with the same idempotency key already existed and
    /// its id is returned instead of a new run.
    pub existing: bool,
}

impl Admin {
    /// Enqueues one run after checking it (task, params, times, tags).
    pub async fn enqueue(&self, e: Enqueue) -> Result<Enqueued, Error> {
        let run = self.prepare(e, self.now()).await?;
        let now = self.now();
        let in_flight = self.enqueue_in_flight();
        let (id, existing) = self
            .store()
            .enqueue(std::slice::from_ref(&run), now)
            .await
            .map_err(|e| Error::of_enqueue(e, None))?[0];
        if !existing {
            self.emit(|| vec![queued(id, &run, now)]).await;
        }
        drop(in_flight);
        self.runs_expire(std::slice::from_ref(&run));
        self.runs_changed();
        Ok(Enqueued { id, existing })
    }

    /// Enqueues runs in one transaction, all or nothing: if any item is invalid,
    /// nothing is enqueued and the error lists every invalid item with its index.
    pub async fn enqueue_many(&self, items: Vec<Enqueue>) -> Result<Vec<Enqueued>, Error> {
        let runs = self.prepare_many(items).await?;
        let now = self.now();
        let in_flight = self.enqueue_in_flight();
        let ids = self
            .store()
            .enqueue(&runs, now)
            .await
            .map_err(|e| Error::of_enqueue(e, Some(runs.len())))?;
        self.emit(|| {
            ids.iter()
                .zip(&runs)
                .filter(|((_, existing), _)| !existing)
                .map(|((id, _), r)| queued(*id, r, now))
                .collect()
        })
        .await;
        drop(in_flight);
        self.runs_expire(&runs);
        self.runs_changed();
        Ok(ids
            .into_iter()
            .map(|(id, existing)| Enqueued { id, existing })
            .collect())
    }

    /// Enqueues one run in the application's own transaction (or any SeaORM
    /// connection to kairos's database): the run exists if and only if `txn` commits,
    /// so it cannot be lost after, or run without, the business write beside it.
    ///
    /// ```no_run
    /// # async fn f(db: kairos::sea_orm::DatabaseConnection, admin: kairos::Admin) -> anyhow::Result<()> {
    /// use kairos::sea_orm::{ConnectionTrait, TransactionTrait};
    /// let txn = db.begin().await?;
    /// txn.execute_unprepared("INSERT INTO orders (id) VALUES (42)").await?;
    /// admin.enqueue_in(&txn, kairos::Enqueue::new("ship_order")
    ///     .params(serde_json::json!({"order": 42}))).await?;
    /// txn.commit().await?; // both, or neither
    /// # Ok(()) }
    /// ```
    ///
    /// A sqlx transaction is lent with [`SqlxTxn`](crate::SqlxTxn).
    ///
    /// Nodes see the run once the transaction commits (at once on PostgreSQL, which
    /// notifies them; within half a second on SQLite); no `queued` event is published
    /// for it, since the transaction may yet roll back.
    pub async fn enqueue_in<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        e: Enqueue,
    ) -> Result<Enqueued, Error> {
        self.same_database(txn).await?;
        let run = self.prepare(e, self.now()).await?;
        let (id, existing) = self
            .store()
            .enqueue_on(txn, std::slice::from_ref(&run), self.now())
            .await
            .map_err(|e| Error::of_enqueue(e, None))?[0];
        self.runs_expire(std::slice::from_ref(&run));
        self.runs_changed();
        Ok(Enqueued { id, existing })
    }

    /// [`Admin::enqueue_many`] in the application's own transaction: all or nothing,
    /// and only if `txn` commits.
    pub async fn enqueue_many_in<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        items: Vec<Enqueue>,
    ) -> Result<Vec<Enqueued>, Error> {
        self.same_database(txn).await?;
        let runs = self.prepare_many(items).await?;
        let ids = self
            .store()
            .enqueue_on(txn, &runs, self.now())
            .await
            .map_err(|e| Error::of_enqueue(e, Some(runs.len())))?;
        self.runs_expire(&runs);
        self.runs_changed();
        Ok(ids
            .into_iter()
            .map(|(id, existing)| Enqueued { id, existing })
            .collect())
    }

    /// Refuses a transaction on another database than kairos's: another engine, or
    /// another database of the same engine (where the run would be written and never
    /// run, and its id would name some other run).
    async fn same_database<C: sea_orm::ConnectionTrait>(&self, txn: &C) -> Result<(), Error> {
        let wrong = |what: String| Error::Invalid {
            field: "txn".into(),
            message: format!("{what}: open the transaction on kairos's database"),
        };
        if txn.get_database_backend() != self.store().backend() {
            return Err(wrong(format!(
                "the transaction is on a {:?} database but kairos's database is {:?}",
                txn.get_database_backend(),
                self.store().backend()
            )));
        }
        let theirs = self.store().database_of(txn).await?;
        let ours = self.store().own_database().await?;
        if theirs != ours {
            return Err(wrong(format!(
                "the transaction is on the database `{theirs}` but kairos's is `{ours}`"
            )));
        }
        Ok(())
    }

    /// Checks every item; the runs to insert, or every problem at once.
    pub(crate) async fn prepare_many(&self, items: Vec<Enqueue>) -> Result<Vec<NewRun>, Error> {
        let now = self.now();
        let total = items.len();
        let mut runs = Vec::with_capacity(total);
        let mut errors = Vec::new();
        let mut views: std::collections::HashMap<String, TaskView> = Default::default();
        // The first item of the batch with each key: a later one with the same key
        // but another request would otherwise be refused naming a run that the
        // refusal itself rolls back.
        let mut keys: std::collections::HashMap<String, (usize, String, serde_json::Value)> =
            Default::default();
        for (i, e) in items.into_iter().enumerate() {
            let view = match views.get(&e.task) {
                Some(v) => Ok(v.clone()),
                None => self.task_view(&e.task).await.inspect(|v| {
                    views.insert(e.task.clone(), v.clone());
                }),
            };
            let run = view.and_then(|v| build(e, &v, now)).and_then(|r| {
                let Some(key) = &r.idempotency_key else {
                    return Ok(r);
                };
                match keys.get(key) {
                    Some((first, task, params)) if *task != r.task || *params != r.params => {
                        Err(Error::Invalid {
                            field: "idempotency_key".into(),
                            message: format!(
                                "the key `{}` is also given to runs[{first}] of this batch, \
                                 with another task or other params; use a new key for a \
                                 different request",
                                crate::error::clip(key)
                            ),
                        })
                    }
                    Some(_) => Ok(r),
                    None => {
                        keys.insert(key.clone(), (i, r.task.clone(), r.params.clone()));
                        Ok(r)
                    }
                }
            });
            match run {
                Ok(r) => runs.push(r),
                Err(err) => errors.push((i, err)),
            }
        }
        if !errors.is_empty() {
            return Err(Error::Batch { total, errors });
        }
        Ok(runs)
    }

    /// Checks one request and turns it into the run to insert.
    pub(crate) async fn prepare(&self, e: Enqueue, now: DateTime<Utc>) -> Result<NewRun, Error> {
        let view = self.task_view(&e.task).await?;
        build(e, &view, now)
    }
}

/// The event of a run being enqueued.
pub(crate) fn queued(id: i64, r: &NewRun, at: DateTime<Utc>) -> crate::events::Event {
    crate::events::Event::new(crate::events::EventKind::RunQueued, at)
        .run(id, &r.task)
        .tags(&r.tags)
        .data(serde_json::json!({
            "run_at": crate::clock::whole_ms(r.run_at),
            "origin": r.origin,
            "queue": r.queue,
            "priority": r.priority,
        }))
}

/// Params as stored: `null` becomes `{}`; anything but an object is refused; the
/// object is checked against the task's parameters.
pub(crate) fn check_params(
    task: &str,
    params: Option<Value>,
    check: &Check,
) -> Result<Value, Error> {
    let params = match params {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(Value::Object(m)) => Value::Object(m),
        Some(other) => {
            return Err(Error::InvalidParams {
                task: task.to_string(),
                problems: vec![format!(
                    "params must be a JSON object of parameter names to values, got {}",
                    crate::task::json_kind(&other)
                )],
            });
        }
    };
    let problems: Vec<String> = match check {
        Check::Any => Vec::new(),
        Check::Exact(f) => match f(&params) {
            Ok(()) => Vec::new(),
            Err(e) => vec![
                e.to_string()
                    .trim_start_matches("invalid params: ")
                    .to_string(),
            ],
        },
        Check::Schema(schema) => match crate::schema_check::check(schema, &params) {
            Ok(()) => Vec::new(),
            Err(problems) => problems,
        },
    };
    if problems.is_empty() {
        Ok(params)
    } else {
        Err(Error::InvalidParams {
            task: task.to_string(),
            problems,
        })
    }
}

fn build(e: Enqueue, view: &TaskView, now: DateTime<Utc>) -> Result<NewRun, Error> {
    let params = check_params(&e.task, e.params, &view.check)?;
    let run_at = match (e.at, e.delay) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "run_at",
                "give either a start time or a delay, not both",
            ));
        }
        (Some(at), None) => at,
        (None, Some(d)) => after(now, d, "delay")?,
        (None, None) => now,
    };
    // Whole milliseconds, as stored: what the `queued` event says is what `runs show`
    // will say.
    let run_at = crate::clock::whole_ms(run_at);
    let timeout = match e.timeout {
        Some(d) if d.is_zero() => {
            return Err(Error::invalid("timeout", "must be longer than zero"));
        }
        Some(d) if d > crate::schedule::MAX_DURATION => {
            return Err(Error::invalid(
                "timeout",
                format!(
                    "at most {}",
                    crate::schedule::format_duration(crate::schedule::MAX_DURATION)
                ),
            ));
        }
        Some(d) => d,
        None => view.policy.timeout,
    };
    let max_retries = e.max_retries.unwrap_or(view.policy.max_retries);
    if max_retries > MAX_RETRIES {
        return Err(Error::invalid(
            "max_retries",
            format!("{max_retries} is more than the {MAX_RETRIES} retries kairos allows"),
        ));
    }
    if e.tags.len() > MAX_TAGS {
        return Err(Error::invalid(
            "tags",
            format!("{} tags; a run carries at most {MAX_TAGS}", e.tags.len()),
        ));
    }
    for (k, v) in &e.tags {
        if k.is_empty() || k.chars().count() > MAX_TAG_KEY || k.contains('=') {
            return Err(Error::invalid(
                "tags",
                format!(
                    "tag key `{k}` must be 1 to {MAX_TAG_KEY} characters without `=`; write key=value"
                ),
            ));
        }
        if v.chars().count() > MAX_TAG_VALUE {
            return Err(Error::invalid(
                "tags",
                format!("the value of tag `{k}` is longer than {MAX_TAG_VALUE} characters"),
            ));
        }
    }
    if let Some(k) = &e.idempotency_key
        && (k.is_empty() || k.chars().count() > MAX_KEY)
    {
        return Err(Error::invalid(
            "idempotency_key",
            format!("must be 1 to {MAX_KEY} characters"),
        ));
    }
    Ok(NewRun {
        task: e.task,
        queue: view.policy.queue.clone(),
        job_id: None,
        origin: RunOrigin::Enqueue,
        params,
        tags: e.tags,
        run_at,
        scheduled_for: run_at,
        priority: e.priority.unwrap_or(view.policy.priority),
        max_retries,
        retry_delay: view.policy.retry_delay,
        timeout,
        idempotency_key: e.idempotency_key,
        expires_at: match e.ttl {
            Some(d) if d.is_zero() => {
                return Err(Error::invalid("ttl", "must be longer than zero"));
            }
            Some(d) => {
                let expires = after(now, d, "ttl")?;
                // Counted from the enqueue: one that ends before the run is due
                // could only ever expire it.
                if expires <= run_at {
                    return Err(Error::invalid(
                        "ttl",
                        format!(
                            "{} ends before the run is due at {}: it would expire without \
                             running; give a ttl longer than the delay",
                            crate::schedule::format_duration(d),
                            run_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                        ),
                    ));
                }
                Some(expires)
            }
            None => None,
        },
        callback_url: match e.callback_url {
            Some(u) => {
                super::check_url(&u).map_err(|why| Error::invalid("callback_url", why))?;
                Some(u)
            }
            None => None,
        },
    })
}
