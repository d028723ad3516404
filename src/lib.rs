//! kairos: persistent, cluster-safe cron and background-run scheduler.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cli;
pub mod clock;
pub mod config;
pub mod job;
pub mod runtime;
pub mod store;
pub mod suggest;
pub mod task;

/// Schedules: cron expressions, intervals, one-off times, durations.
pub mod schedule {
    pub use kairos_schedule::*;
}

pub use kairos_macros::task;

pub use clock::{Clock, ManualClock, SystemClock};
pub use runtime::{Enqueue, Scheduler, SchedulerBuilder, SchedulerHandle};
pub use store::{Job, Run, RunFilter, RunStatus};
pub use task::{FailedRun, Registry, TaskContext, TaskDef, TaskError};

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
