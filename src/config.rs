//! `jobs.toml`: the configuration model, loading with file:line:column errors, and the
//! resolution of the registry plus config into job specs and task policies.
//!
//! PLACEHOLDER: the real implementation replaces this file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::job::{Defaults, JobSpec, TaskPolicy};
use crate::task::Registry;

/// Why `jobs.toml` was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is read but wrong at a place.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A problem not tied to one place (e.g. a duplicate job name across sources).
    #[error("{0}")]
    Other(String),
}

/// The `[scheduler]` table.
#[derive(Debug, Clone, Default)]
pub struct SchedulerConfig {
    /// Database URL.
    pub database_url: Option<String>,
    /// Runs executing at once on a node.
    pub max_workers: Option<usize>,
    /// How long shutdown waits for running runs.
    pub shutdown_grace: Option<std::time::Duration>,
}

/// A parsed `jobs.toml`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `[scheduler]`.
    pub scheduler: SchedulerConfig,
    /// Scheduler-wide defaults.
    pub defaults: Defaults,
}

impl Config {
    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses text; `file` names it in errors.
    pub fn parse(_text: &str, _file: &str) -> Result<Config, ConfigError> {
        Ok(Config::default())
    }

    /// Job specs (from the macro and `[[jobs]]`) and per-task policies, checked against
    /// the registry.
    pub fn resolve(
        &self,
        registry: &Registry,
    ) -> Result<(Vec<JobSpec>, HashMap<String, TaskPolicy>), ConfigError> {
        let d = &self.defaults;
        let policies = registry
            .tasks()
            .into_iter()
            .map(|t| {
                (
                    t.name.to_string(),
                    TaskPolicy {
                        max_instances: t.max_instances,
                        max_retries: t.max_retries.unwrap_or(d.max_retries),
                        retry_delay: t.retry_delay.unwrap_or(d.retry_delay),
                        timeout: t.timeout.unwrap_or(d.timeout),
                        priority: t.priority.unwrap_or(d.priority),
                        queue: t.queue.map(str::to_string),
                    },
                )
            })
            .collect();
        Ok((Vec::new(), policies))
    }
}
