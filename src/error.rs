//! The error every operation of the front door returns (handle, admin API, CLI, and
//! the HTTP API built on them), with a stable machine-readable code for each kind.

use crate::store::StoreError;

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No task of that name is registered (or published, for the standalone CLI).
    #[error("unknown task `{}`{hint}", clip(name))]
    UnknownTask {
        /// The name given.
        name: String,
        /// A suggestion and the known names.
        hint: String,
    },
    /// The params do not fit the task's parameters.
    #[error("invalid params for task `{task}`: {}", problems.join("; "))]
    InvalidParams {
        /// The task.
        task: String,
        /// Each problem, naming the parameter and the expected type.
        problems: Vec<String>,
    },
    /// An input value is out of range or malformed.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, flag or key.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// No job of that name.
    #[error("no job named `{}`{hint}", clip(name))]
    JobNotFound {
        /// The name given.
        name: String,
        /// A suggestion and where to look.
        hint: String,
    },
    /// No run with that id.
    #[error("no run with id {id}; `kairos runs list` shows recent runs")]
    RunNotFound {
        /// The id given.
        id: i64,
    },
    /// No queue of that name.
    #[error("no queue named `{}`{hint}", clip(name))]
    QueueNotFound {
        /// The name given.
        name: String,
        /// A suggestion and the known names.
        hint: String,
    },
    /// No node with that id or name.
    #[error("no node `{}`{hint}", clip(name))]
    NodeNotFound {
        /// The id given.
        name: String,
        /// A suggestion and where to look.
        hint: String,
    },
    /// The operation does not fit the current state (cancelling a finished run,
    /// resuming a disabled job, a name already taken...).
    #[error("{message}")]
    Conflict {
        /// What the state is and what to do.
        message: String,
    },
    /// Some items of a batch are invalid; nothing was enqueued. The message names each
    /// by its index from 0 (`runs[2]`), as `errors` and HTTP's `index` do.
    #[error("{} of {total} runs are invalid, nothing was enqueued: {}", errors.len(), describe_batch(errors))]
    Batch {
        /// How many items the batch had.
        total: usize,
        /// Each invalid item: its index (from 0) and why.
        errors: Vec<(usize, Error)>,
    },
    /// The idempotency key belongs to an unfinished run of another task or with
    /// other params: returning that run would hand back something not asked for.
    #[error(
        "the idempotency key `{}` belongs to run {run_id} (task `{task}`, still {status}) \
         with another task or other params; use a new key for a different request",
        clip(key)
    )]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The run holding it.
        run_id: i64,
        /// That run's task.
        task: String,
        /// That run's status.
        status: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A part of the running node failed (it panicked), so the node stopped rather
    /// than go on beating its heartbeat without finishing runs.
    #[error(
        "the node stopped: its {part} failed ({message}); the runs it held are taken back \
         by other nodes (or by this one when it starts again)"
    )]
    NodeFailed {
        /// Which part: `completer`, `dispatcher`, `planner`, ...
        part: &'static str,
        /// What it failed with.
        message: String,
    },
}

/// At most ~80 characters of user input, for echoing it in messages: a mistyped
/// 10,000-character name must not become a 10,000-character error.
pub(crate) fn clip(s: &str) -> String {
    let n = s.chars().count();
    if n <= 80 {
        s.to_string()
    } else {
        format!(
            "{}… ({n} characters)",
            s.chars().take(77).collect::<String>()
        )
    }
}

fn describe_batch(errors: &[(usize, Error)]) -> String {
    let mut parts: Vec<String> = errors
        .iter()
        .take(5)
        .map(|(i, e)| format!("runs[{i}]: {e}"))
        .collect();
    if errors.len() > 5 {
        parts.push(format!("and {} more", errors.len() - 5));
    }
    parts.join("; ")
}

impl Error {
    /// A stable code for programs: `unknown_task`, `invalid_params`, `invalid_input`,
    /// `not_found`, `conflict`, `idempotency_conflict`, `invalid_batch`,
    /// `database_unavailable`, `database`, `node_failed`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnknownTask { .. } => "unknown_task",
            Error::InvalidParams { .. } => "invalid_params",
            Error::Invalid { .. } => "invalid_input",
            Error::JobNotFound { .. }
            | Error::RunNotFound { .. }
            | Error::QueueNotFound { .. }
            | Error::NodeNotFound { .. } => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::IdempotencyConflict { .. } => "idempotency_conflict",
            Error::Batch { .. } => "invalid_batch",
            Error::Store(e) if e.is_connection() => "database_unavailable",
            Error::Store(_) => "database",
            Error::NodeFailed { .. } => "node_failed",
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Error {
        Error::Conflict {
            message: message.into(),
        }
    }
}

impl Error {
    /// An enqueue's failure: a single run's key conflict as it is, a batch's as the
    /// batch's error naming the item, like the batch's other refusals.
    pub(crate) fn of_enqueue(e: crate::store::EnqueueError, total: Option<usize>) -> Error {
        match e {
            crate::store::EnqueueError::Store(e) => Error::Store(e),
            crate::store::EnqueueError::KeyTaken(t) => {
                let conflict = Error::IdempotencyConflict {
                    key: t.key,
                    run_id: t.id,
                    task: t.task,
                    status: t.status,
                };
                match total {
                    Some(total) => Error::Batch {
                        total,
                        errors: vec![(t.index, conflict)],
                    },
                    None => conflict,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_names_its_items_by_their_index_from_zero() {
        let bad = |task: &str| Error::UnknownTask {
            name: task.into(),
            hint: String::new(),
        };
        let e = Error::Batch {
            total: 3,
            errors: vec![(0, bad("x")), (2, bad("y"))],
        };
        let text = e.to_string();
        assert!(text.starts_with("2 of 3 runs are invalid"), "{text}");
        assert!(text.contains("runs[0]: unknown task `x`"), "{text}");
        assert!(text.contains("runs[2]: unknown task `y`"), "{text}");
    }
}
