//! The one front door: every operation on jobs, runs, queues and nodes (enqueue one or
//! many, trigger, pause and resume, cancel, retry, delete, create and update jobs,
//! listings), with the checks that make bad input an error at the door rather than a
//! failed run later. The application's [`SchedulerHandle`](crate::SchedulerHandle), the
//! admin CLI and the HTTP API all call it; they only parse input and print output.
//!
//! What a task is (its policy and its parameters) comes from a *task source*: the
//! registry and configuration of the application when kairos runs inside it, or the
//! task catalogue the nodes publish in the database when a tool (the standalone
//! `kairos` binary) has no compiled tasks. Params are then checked exactly (by the
//! code the macro generated) or against the published JSON Schema.

mod cluster;
mod enqueue;
mod insight;
mod jobs;
mod runs;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

pub(crate) use enqueue::MAX_RETRIES;
pub(crate) use enqueue::queued as queued_event;
pub use enqueue::{Enqueue, Enqueued};
pub use insight::DEFAULT_HEARTBEAT_MAX_AGE;
pub(crate) use insight::max_age_problem;
pub(crate) use jobs::disabled_why;
pub use jobs::{JobChanges, NewJob};
pub use runs::CancelResult;

use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::job::{Defaults, TaskPolicy};
use crate::model::TaskInfo;
use crate::runtime::{CancelReason, Signals};
use crate::store::{DEFAULT_CONNECT_TIMEOUT, OpenMode, Store};
use crate::task::{ParamsCheck, Registry};

/// Operations on a kairos database: enqueue and steer runs, jobs, queues and nodes, and
/// read them back. Cheap to clone.
///
/// An application gets one bound to its tasks from
/// [`SchedulerHandle::admin`](crate::SchedulerHandle::admin); a tool without the
/// application's code connects with [`Admin::connect`] and uses the task catalogue the
/// nodes published.
#[derive(Debug, Clone)]
pub struct Admin {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    tasks: Tasks,
    clock: Arc<dyn Clock>,
    defaults: Defaults,
    /// The loops of the node this admin belongs to, woken by its changes.
    signals: Option<Arc<Signals>>,
    /// Catalogue entries read lately (see [`CATALOG_TTL`]).
    catalog: std::sync::Mutex<HashMap<String, (std::time::Instant, TaskInfo)>>,
}

/// How long a catalogue entry read from the database serves the operations that follow
/// (a tool or an HTTP server enqueuing runs one after another would otherwise read it
/// before every run, a round trip on the way to the run's start). A node publishes a
/// changed entry when it starts with a new version of the task, so a check may follow
/// the previous version for this long after such a deploy; an unknown name is always
/// looked up again, so a task registered meanwhile is found at once.
const CATALOG_TTL: Duration = Duration::from_secs(1);

/// Where task policies and parameters come from.
#[derive(Debug)]
pub(crate) enum Tasks {
    /// The catalogue nodes published in the database.
    Catalog,
    /// The application's own registry and resolved configuration.
    App {
        registry: Registry,
        policies: HashMap<String, TaskPolicy>,
    },
}

/// How params of a task are checked at the door.
#[derive(Debug, Clone)]
pub(crate) enum Check {
    /// Exactly as the handler will read them (compiled in).
    Exact(ParamsCheck),
    /// Against the JSON Schema the nodes published.
    Schema(Value),
    /// Any object (a task registered by hand).
    Any,
}

/// A task as an operation sees it.
#[derive(Debug, Clone)]
pub(crate) struct TaskView {
    pub(crate) policy: TaskPolicy,
    pub(crate) check: Check,
}

impl Admin {
    /// Connects to an existing kairos database (it must have been created by a node or
    /// `kairos migrate`) and uses the task catalogue its nodes published.
    pub async fn connect(url: &str) -> Result<Admin, Error> {
        let store = Store::open(url, OpenMode::Existing, DEFAULT_CONNECT_TIMEOUT).await?;
        Ok(Admin::new(
            store,
            Tasks::Catalog,
            Arc::new(SystemClock),
            Defaults::default(),
            None,
        ))
    }

    /// An admin; with `signals`, its changes wake the loops of that local node.
    pub(crate) fn new(
        store: Store,
        tasks: Tasks,
        clock: Arc<dyn Clock>,
        defaults: Defaults,
        signals: Option<Arc<Signals>>,
    ) -> Admin {
        Admin {
            inner: Arc::new(Inner {
                store,
                tasks,
                clock,
                defaults,
                signals,
                catalog: Default::default(),
            }),
        }
    }

    /// Publishes events `make` builds, if anybody listens: to the local node's stream,
    /// or (from a tool without a node) to the event log while another process watches.
    pub(crate) async fn emit(&self, make: impl FnOnce() -> Vec<crate::events::Event>) {
        match &self.inner.signals {
            Some(s) => {
                if s.events.wanted() {
                    for e in make() {
                        s.events.publish(e);
                    }
                }
            }
            None => {
                let since = self.now() - crate::runtime::SUBSCRIBER_TTL;
                if self.store().watched_lately(since).await.unwrap_or(false) {
                    let _ = self.store().insert_events(&make()).await;
                }
            }
        }
    }

    /// A subscription to the local node's event stream (which also relays other
    /// processes' events), when this admin belongs to a running node; `None` for an
    /// admin tool, which reads the database's event log instead.
    pub(crate) fn local_events(
        &self,
        filter: crate::events::EventFilter,
    ) -> Option<crate::events::EventStream> {
        self.inner
            .signals
            .as_ref()
            .map(|s| s.events.subscribe(filter))
    }

    /// Jobs changed: the local planner and dispatcher look again.
    pub(crate) fn jobs_changed(&self) {
        if let Some(s) = &self.inner.signals {
            s.wake_planner.notify_one();
            s.wake_dispatcher.notify_one();
        }
    }

    /// On a node: counts an enqueue until its `run_queued` events are published, so
    /// that the node's claims do not publish a start first (see the runtime's `order`).
    pub(crate) fn enqueue_in_flight(&self) -> Option<crate::runtime::InFlight<'_>> {
        self.inner.signals.as_ref().map(|s| s.enqueues.enter())
    }

    /// Runs were added or queued again: the local dispatcher looks again.
    pub(crate) fn runs_changed(&self) {
        if let Some(s) = &self.inner.signals {
            s.wake_dispatcher.notify_one();
        }
    }

    /// Runs were enqueued: this node expires those with a time to live when it ends.
    pub(crate) fn runs_expire(&self, runs: &[crate::store::NewRun]) {
        if let Some(s) = &self.inner.signals {
            s.expiry.note_all(runs.iter().map(|r| r.expires_at));
        }
    }

    /// A run was cancelled: stop it at once if this node runs it.
    pub(crate) fn run_cancelled(&self, id: i64) {
        if let Some(s) = &self.inner.signals {
            s.cancel_local(id, None, CancelReason::Operator);
            s.wake_dispatcher.notify_one();
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    pub(crate) fn defaults(&self) -> &Defaults {
        &self.inner.defaults
    }

    /// The policy and params check of `name`, or an unknown-task error with a
    /// suggestion.
    pub(crate) async fn task_view(&self, name: &str) -> Result<TaskView, Error> {
        match &self.inner.tasks {
            Tasks::App { registry, policies } => {
                let Some(def) = registry.get(name) else {
                    let names = registry.names();
                    return Err(Error::UnknownTask {
                        name: name.to_string(),
                        hint: crate::suggest::hint(
                            name,
                            &names,
                            "tasks",
                            "no task is registered in this program",
                        ),
                    });
                };
                let policy = policies
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| self.inner.defaults.unknown_task_policy());
                let check = match def.check_params {
                    Some(f) => Check::Exact(f),
                    None => Check::Any,
                };
                Ok(TaskView { policy, check })
            }
            Tasks::Catalog => match self.catalog_task(name).await? {
                Some(t) => Ok(TaskView {
                    policy: TaskPolicy {
                        max_instances: t.max_instances,
                        max_retries: t.max_retries,
                        retry_delay: t.retry_delay,
                        timeout: t.timeout,
                        priority: t.priority,
                        queue: t.queue,
                        job_policy: t.job_policy,
                    },
                    check: Check::Schema(t.params_schema),
                }),
                None => {
                    let tasks = self.inner.store.tasks().await?;
                    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
                    Err(Error::UnknownTask {
                        name: name.to_string(),
                        hint: crate::suggest::hint(
                            name,
                            &names,
                            "tasks",
                            "no node has registered tasks in this database yet; start the \
                             application once (or check --database-url)",
                        ),
                    })
                }
            },
        }
    }

    /// An unknown-task error for a filter naming a task that no node published and
    /// this program does not register; `None` when the name is known. Filters call it
    /// only when they matched nothing, so a task whose runs outlived it still lists.
    pub(crate) async fn unknown_task_filter(&self, name: &str) -> Result<Option<Error>, Error> {
        let mut names: Vec<String> = self
            .inner
            .store
            .tasks()
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect();
        if let Tasks::App { registry, .. } = &self.inner.tasks {
            names.extend(registry.names().into_iter().map(str::to_string));
        }
        if names.iter().any(|n| n == name) {
            return Ok(None);
        }
        names.sort();
        names.dedup();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(Some(Error::UnknownTask {
            name: name.to_string(),
            hint: crate::suggest::hint(
                name,
                &names,
                "tasks",
                "no node has registered tasks in this database yet",
            ),
        }))
    }

    /// The catalogue entry of `name`, read at most [`CATALOG_TTL`] ago.
    async fn catalog_task(&self, name: &str) -> Result<Option<TaskInfo>, Error> {
        let cache = || self.inner.catalog.lock().expect("catalogue cache poisoned");
        if let Some((at, t)) = cache().get(name)
            && at.elapsed() < CATALOG_TTL
        {
            return Ok(Some(t.clone()));
        }
        let found = self.inner.store.task(name).await?;
        let mut cache = cache();
        match &found {
            Some(t) => {
                cache.insert(name.to_string(), (std::time::Instant::now(), t.clone()));
            }
            None => {
                cache.remove(name);
            }
        }
        Ok(found)
    }

    /// Every task: the application's (with effective policies) or the published
    /// catalogue.
    pub async fn tasks(&self) -> Result<Vec<TaskInfo>, Error> {
        match &self.inner.tasks {
            Tasks::App { registry, policies } => Ok(registry
                .tasks()
                .into_iter()
                .map(|t| {
                    let p = policies
                        .get(t.name)
                        .cloned()
                        .unwrap_or_else(|| self.inner.defaults.unknown_task_policy());
                    task_info(t, &p)
                })
                .collect()),
            Tasks::Catalog => Ok(self.inner.store.tasks().await?),
        }
    }
}

/// A task's catalogue entry from its definition and effective policy.
pub(crate) fn task_info(t: &crate::task::TaskDef, p: &TaskPolicy) -> TaskInfo {
    TaskInfo {
        name: t.name.to_string(),
        queue: p.queue.clone(),
        priority: p.priority,
        max_retries: p.max_retries,
        retry_delay: p.retry_delay,
        timeout: p.timeout,
        max_instances: p.max_instances,
        job_policy: p.job_policy,
        params_schema: t.params_schema(),
        location: t.location.to_string(),
    }
}

/// Checks a webhook URL: absolute `http://` or `https://` with a host. Returns what is
/// wrong, to be put after the field's name.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            format!(
                "`{}` is not an http:// or https:// URL",
                crate::error::clip(url)
            )
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || url.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{}` has no host or contains spaces",
            crate::error::clip(url)
        ));
    }
    if url.len() > 2048 {
        return Err("is longer than 2048 characters".into());
    }
    // What the above does not catch (a bracket left open, a bad port) would fail every
    // delivery instead.
    if let Err(e) = reqwest::Url::parse(url) {
        return Err(format!(
            "`{}` is not a valid URL: {e}",
            crate::error::clip(url)
        ));
    }
    Ok(())
}

/// `now + d`, or an error naming `field` when that is beyond any date kairos can store
/// (such a delay would never come).
pub(crate) fn after(now: DateTime<Utc>, d: Duration, field: &str) -> Result<DateTime<Utc>, Error> {
    if d > crate::schedule::MAX_DURATION {
        return Err(Error::invalid(
            field,
            format!(
                "{} is too long: a run that far ahead would never start; use at most {}",
                crate::schedule::format_duration(d),
                crate::schedule::format_duration(crate::schedule::MAX_DURATION)
            ),
        ));
    }
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| Error::invalid(field, "too far in the future"))
}

#[cfg(test)]
mod url_tests {
    use super::check_url;

    #[test]
    fn a_webhook_url_is_absolute_http_with_a_host_and_parses() {
        assert_eq!(check_url("https://example.com/hooks?x=1"), Ok(()));
        assert_eq!(check_url("http://[::1]:8080/h"), Ok(()));
        for (url, why) in [
            ("ftp://example.com", "is not an http:// or https:// URL"),
            ("http:///path", "has no host or contains spaces"),
            ("http://[::1", "is not a valid URL: invalid IPv6 address"),
            (
                "http://example.com:99999/",
                "is not a valid URL: invalid port number",
            ),
        ] {
            let err = check_url(url).unwrap_err();
            assert!(err.ends_with(why), "{url}: {err}");
        }
    }
}
