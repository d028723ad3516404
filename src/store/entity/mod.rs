//! SeaORM entities of the main kairos tables, as stored. Times are milliseconds since
//! the Unix epoch (UTC) in BIGINT columns: one representation that sorts and compares
//! the same on SQLite, PostgreSQL and MySQL, unlike driver-specific timestamp text.
//! Durations are milliseconds; JSON is text. `codec` turns these rows into the typed
//! records of `crate::model`; nothing above the store sees them.

pub(crate) mod job;
pub(crate) mod node;
pub(crate) mod queue;
pub(crate) mod run;
pub(crate) mod task;
