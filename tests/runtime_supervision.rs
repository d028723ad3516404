//! A node one of whose parts panics (here: its log writer fails, as one writing to a
//! closed pipe does) stops, and `Scheduler::run` says which part failed, rather than go
//! on beating its heartbeat, and renewing leases, without finishing runs.
//!
//! The failing log layer is the process's global subscriber, so this file holds one
//! test: a thread-local subscriber does not reliably see events whose call sites other
//! tests' threads registered first.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use kairos::task::TaskOutcome;
use kairos::{Enqueue, Registry, RunStatus, Scheduler, TaskContext, TaskDef};
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

fn hangs(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        ctx.cancelled().await;
        Ok(None)
    })
}

/// The message of the event the log layer fails on (none: it fails on nothing).
static FAIL_ON: Mutex<Option<&'static str>> = Mutex::new(None);

/// A log layer that panics on the event whose message is in [`FAIL_ON`].
struct FailingLog;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for FailingLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        if *FAIL_ON.lock().unwrap() == Some(m.0.as_str()) {
            panic!("the log writer failed");
        }
    }
}

#[tokio::test]
async fn a_node_whose_part_panics_stops_and_says_so() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(FailingLog))
        .unwrap();
    for (message, part) in [("started", "executor"), ("cancel requested", "watcher")] {
        *FAIL_ON.lock().unwrap() = Some(message);
        let db = common::sqlite();
        let registry =
            Registry::from_tasks([TaskDef::new("hangs", hangs, "tests/runtime_supervision.rs")])
                .unwrap();
        let sched = Scheduler::builder()
            .database_url(&db.url)
            .registry(registry)
            .shutdown_grace(Duration::from_millis(200))
            .cancel_grace(Duration::from_millis(100))
            .build()
            .await
            .unwrap();
        let h = sched.handle();
        let node = tokio::spawn(sched.run());
        let id = h.enqueue(Enqueue::new("hangs")).await.unwrap();
        if part == "watcher" {
            common::wait_status(h.admin(), id, RunStatus::Running).await;
            // As another process would: the node hears of it through its watcher.
            let other = kairos::Admin::connect(&db.url).await.unwrap();
            other.cancel_run(id).await.unwrap();
        }
        let ended = tokio::time::timeout(Duration::from_secs(20), node)
            .await
            .unwrap_or_else(|_| panic!("the node went on after its {part} failed"))
            .unwrap();
        match ended {
            Err(kairos::Error::NodeFailed {
                part: failed,
                message,
            }) => {
                assert_eq!(failed, part);
                assert!(message.contains("the log writer failed"), "{message}");
            }
            other => panic!("{part}: {other:?}"),
        }
        *FAIL_ON.lock().unwrap() = None;
        let admin = kairos::Admin::connect(&db.url).await.unwrap();
        assert_eq!(admin.nodes().await.unwrap()[0].status, "stopped", "{part}");
    }
}
