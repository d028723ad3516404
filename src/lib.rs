//! kairos: persistent, cluster-safe cron and background-run scheduler.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
pub mod config;
pub mod job;
pub mod task;

/// Schedules: cron expressions, intervals, one-off times, durations.
pub mod schedule {
    pub use kairos_schedule::*;
}

pub use kairos_macros::task;

pub use clock::{Clock, ManualClock, SystemClock};
pub use task::{FailedRun, Registry, TaskContext, TaskDef, TaskError};

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
