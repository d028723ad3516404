//! SeaORM entities of the kairos tables. Times are stored as milliseconds since the Unix
//! epoch (UTC) in BIGINT columns: one representation that sorts and compares the same on
//! SQLite, PostgreSQL and MySQL, unlike driver-specific timestamp text.

pub mod job;
pub mod node;
pub mod run;
pub mod run_log;
