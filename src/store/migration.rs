//! Schema migrations, applied on start-up (and by `kairos migrate`). Once released, a
//! migration is never edited; a change is a new dated migration.
//!
//! Every statement of a migration is idempotent (`IF NOT EXISTS`, `ON CONFLICT DO
//! NOTHING`), so running one again re-creates whatever was dropped by hand: that is how
//! `kairos migrate` repairs a damaged schema (see [`super::schema`]).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The kairos migrator; its history table is `kairos_migrations`.
pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_init::Migration),
            Box::new(m20261128_000002_run_insight::Migration),
            Box::new(m20261129_000003_notify::Migration),
            Box::new(m20261129_000004_lean_indexes::Migration),
            Box::new(m20261130_000005_announced_runs::Migration),
            Box::new(m20261130_000006_node_names::Migration),
            Box::new(m20261130_000007_node_heartbeat_timeouts::Migration),
            Box::new(m20261130_000008_former_jobs::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "kairos_migrations".into_iden()
    }
}

#[derive(DeriveIden)]
enum KairosJobs {
    Table,
    Id,
    Name,
    Task,
    Kind,
    Cron,
    Timezone,
    Dst,
    IntervalMs,
    AnchorAt,
    Params,
    Priority,
    Misfire,
    MaxCatchUp,
    MisfireGraceMs,
    Overlap,
    Enabled,
    DisabledReason,
    Paused,
    PausedAt,
    PauseWindows,
    Source,
    NextRunAt,
    LastFiredAt,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum KairosRuns {
    Table,
    Id,
    Task,
    Queue,
    JobId,
    Origin,
    Params,
    Tags,
    Status,
    Priority,
    RunAt,
    ScheduledFor,
    Attempt,
    MaxRetries,
    RetryDelayMs,
    TimeoutMs,
    NodeId,
    LeaseUntil,
    CancelRequested,
    IdempotencyKey,
    Result,
    Error,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum KairosRunTags {
    Table,
    RunId,
    Key,
    Value,
}

#[derive(DeriveIden)]
enum KairosRunHistory {
    Table,
    Id,
    RunId,
    Attempt,
    At,
    Event,
    Message,
    NodeId,
}

#[derive(DeriveIden)]
enum KairosJobSlots {
    Table,
    Id,
    JobId,
    FirstSlot,
    LastSlot,
    Outcome,
    Reason,
    RunId,
    RecordedAt,
}

#[derive(DeriveIden)]
enum KairosQueues {
    Table,
    Name,
    Concurrency,
    RateLimit,
    RateWindowMs,
    Paused,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum KairosQueueStarts {
    Table,
    Id,
    Queue,
    At,
}

#[derive(DeriveIden)]
enum KairosNodes {
    Table,
    Id,
    Hostname,
    Pid,
    Version,
    MaxWorkers,
    Status,
    Paused,
    StartedAt,
    HeartbeatAt,
}

#[derive(DeriveIden)]
enum KairosTasks {
    Table,
    Name,
    Queue,
    Priority,
    MaxRetries,
    RetryDelayMs,
    TimeoutMs,
    MaxInstances,
    Misfire,
    MaxCatchUp,
    MisfireGraceMs,
    Overlap,
    ParamsSchema,
    Location,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum KairosMeta {
    Table,
    Key,
    Value,
}

/// Every table and its columns, for the schema check.
pub(crate) const TABLES: &[(&str, &[&str])] = &[
    (
        "kairos_jobs",
        &[
            "id",
            "name",
            "task",
            "kind",
            "cron",
            "timezone",
            "dst",
            "interval_ms",
            "anchor_at",
            "params",
            "priority",
            "misfire",
            "max_catch_up",
            "misfire_grace_ms",
            "overlap",
            "enabled",
            "disabled_reason",
            "paused",
            "paused_at",
            "pause_windows",
            "source",
            "next_run_at",
            "last_fired_at",
            "version",
            "created_at",
            "updated_at",
            "callback_url",
        ],
    ),
    (
        "kairos_runs",
        &[
            "id",
            "task",
            "queue",
            "job_id",
            "origin",
            "params",
            "tags",
            "status",
            "priority",
            "run_at",
            "scheduled_for",
            "attempt",
            "max_retries",
            "retry_delay_ms",
            "timeout_ms",
            "node_id",
            "lease_until",
            "cancel_requested",
            "idempotency_key",
            "result",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "expires_at",
            "progress",
            "progress_message",
            "stage",
            "checkpoint",
            "callback_url",
        ],
    ),
    ("kairos_run_tags", &["run_id", "key", "value"]),
    (
        "kairos_run_logs",
        &["id", "run_id", "attempt", "at", "level", "message"],
    ),
    (
        "kairos_deliveries",
        &[
            "id",
            "run_id",
            "url",
            "attempt",
            "at",
            "status_code",
            "error",
            "delivered",
        ],
    ),
    (
        "kairos_events",
        &[
            "id", "at", "kind", "run_id", "job", "task", "node_id", "data",
        ],
    ),
    ("kairos_subscribers", &["id", "heartbeat_at"]),
    (
        "kairos_run_history",
        &[
            "id", "run_id", "attempt", "at", "event", "message", "node_id",
        ],
    ),
    (
        "kairos_job_slots",
        &[
            "id",
            "job_id",
            "first_slot",
            "last_slot",
            "outcome",
            "reason",
            "run_id",
            "recorded_at",
        ],
    ),
    (
        "kairos_queues",
        &[
            "name",
            "concurrency",
            "rate_limit",
            "rate_window_ms",
            "paused",
            "updated_at",
        ],
    ),
    ("kairos_queue_starts", &["id", "queue", "at"]),
    (
        "kairos_nodes",
        &[
            "id",
            "name",
            "hostname",
            "pid",
            "version",
            "max_workers",
            "status",
            "paused",
            "started_at",
            "heartbeat_at",
            "heartbeat_timeout_ms",
        ],
    ),
    (
        "kairos_tasks",
        &[
            "name",
            "queue",
            "priority",
            "max_retries",
            "retry_delay_ms",
            "timeout_ms",
            "max_instances",
            "misfire",
            "max_catch_up",
            "misfire_grace_ms",
            "overlap",
            "params_schema",
            "location",
            "updated_at",
        ],
    ),
    ("kairos_meta", &["key", "value"]),
    ("kairos_former_jobs", &["id", "name", "deleted_at"]),
];

/// Indexes, created with `IF NOT EXISTS`.
///
/// Partial indexes keep the hot queries independent of how many finished runs the
/// table holds: claims read only queued rows, lease checks and limits only running
/// ones. Every index on `kairos_runs` is paid for on the hot path (a run's row changes
/// three times), so admin listings that can scan (counts per queue, filters on the
/// creation time) have none of their own. The unique `(job_id, scheduled_for)` index is the last line of exactly-once
/// firing; the unique partial index on `idempotency_key` makes a key name one
/// unfinished run at a time, whoever enqueues it.
pub(crate) const INDEXES: &[(&str, &str)] = &[
    (
        "kairos_runs_job_slot",
        "CREATE UNIQUE INDEX IF NOT EXISTS kairos_runs_job_slot ON kairos_runs (job_id, scheduled_for)",
    ),
    (
        "kairos_runs_claim",
        "CREATE INDEX IF NOT EXISTS kairos_runs_claim ON kairos_runs (priority, run_at, id) WHERE status = 'queued'",
    ),
    (
        "kairos_runs_due",
        "CREATE INDEX IF NOT EXISTS kairos_runs_due ON kairos_runs (run_at) WHERE status = 'queued'",
    ),
    (
        "kairos_runs_running",
        "CREATE INDEX IF NOT EXISTS kairos_runs_running ON kairos_runs (node_id, task) WHERE status = 'running'",
    ),
    (
        "kairos_runs_job_open",
        "CREATE INDEX IF NOT EXISTS kairos_runs_job_open ON kairos_runs (job_id) \
         WHERE job_id IS NOT NULL AND status IN ('queued', 'running')",
    ),
    (
        "kairos_runs_finished",
        "CREATE INDEX IF NOT EXISTS kairos_runs_finished ON kairos_runs (status, finished_at) WHERE finished_at IS NOT NULL",
    ),
    (
        "kairos_runs_task",
        "CREATE INDEX IF NOT EXISTS kairos_runs_task ON kairos_runs (task, id)",
    ),
    (
        "kairos_runs_idempotency",
        "CREATE UNIQUE INDEX IF NOT EXISTS kairos_runs_idempotency ON kairos_runs (idempotency_key) \
         WHERE idempotency_key IS NOT NULL AND status IN ('queued', 'running')",
    ),
    (
        "kairos_run_tags_lookup",
        "CREATE INDEX IF NOT EXISTS kairos_run_tags_lookup ON kairos_run_tags (key, value, run_id)",
    ),
    (
        "kairos_run_history_run",
        "CREATE INDEX IF NOT EXISTS kairos_run_history_run ON kairos_run_history (run_id, id)",
    ),
    (
        "kairos_job_slots_job",
        "CREATE INDEX IF NOT EXISTS kairos_job_slots_job ON kairos_job_slots (job_id, last_slot)",
    ),
    (
        "kairos_queue_starts_queue",
        "CREATE INDEX IF NOT EXISTS kairos_queue_starts_queue ON kairos_queue_starts (queue, at)",
    ),
    (
        "kairos_jobs_next",
        "CREATE INDEX IF NOT EXISTS kairos_jobs_next ON kairos_jobs (next_run_at) WHERE enabled AND NOT paused",
    ),
];

/// Indexes of the run-insight migration.
pub(crate) const INSIGHT_INDEXES: &[(&str, &str)] = &[
    (
        "kairos_run_logs_run",
        "CREATE INDEX IF NOT EXISTS kairos_run_logs_run ON kairos_run_logs (run_id, id)",
    ),
    (
        "kairos_deliveries_run",
        "CREATE INDEX IF NOT EXISTS kairos_deliveries_run ON kairos_deliveries (run_id, id)",
    ),
    (
        "kairos_runs_expiring",
        "CREATE INDEX IF NOT EXISTS kairos_runs_expiring ON kairos_runs (expires_at) \
         WHERE expires_at IS NOT NULL AND status = 'queued'",
    ),
];

mod m20261126_000001_init {
    use super::*;

    pub(super) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261126_000001_init"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            for table in tables() {
                manager.create_table(table).await?;
            }
            let db = manager.get_connection();
            for (_, sql) in INDEXES {
                db.execute_unprepared(sql).await?;
            }
            db.execute_unprepared(
                "INSERT INTO kairos_meta (key, value) VALUES ('change_seq', 0), ('nodes_paused', 0) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .await?;
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            for (t, _) in TABLES.iter().rev() {
                manager
                    .get_connection()
                    .execute_unprepared(&format!("DROP TABLE IF EXISTS {t}"))
                    .await?;
            }
            Ok(())
        }
    }

    fn tables() -> Vec<TableCreateStatement> {
        vec![
            Table::create()
                .table(KairosJobs::Table)
                .if_not_exists()
                .col(big_pk_auto(KairosJobs::Id))
                .col(string_uniq(KairosJobs::Name))
                .col(string(KairosJobs::Task))
                .col(string(KairosJobs::Kind))
                .col(string_null(KairosJobs::Cron))
                .col(string_null(KairosJobs::Timezone))
                .col(string(KairosJobs::Dst))
                .col(big_integer_null(KairosJobs::IntervalMs))
                .col(big_integer_null(KairosJobs::AnchorAt))
                .col(text(KairosJobs::Params))
                .col(integer_null(KairosJobs::Priority))
                .col(string(KairosJobs::Misfire))
                .col(integer(KairosJobs::MaxCatchUp))
                .col(big_integer(KairosJobs::MisfireGraceMs))
                .col(string(KairosJobs::Overlap))
                .col(boolean(KairosJobs::Enabled))
                .col(string_null(KairosJobs::DisabledReason))
                .col(boolean(KairosJobs::Paused))
                .col(big_integer_null(KairosJobs::PausedAt))
                .col(text_null(KairosJobs::PauseWindows))
                .col(string(KairosJobs::Source))
                .col(big_integer_null(KairosJobs::NextRunAt))
                .col(big_integer_null(KairosJobs::LastFiredAt))
                .col(big_integer(KairosJobs::Version))
                .col(big_integer(KairosJobs::CreatedAt))
                .col(big_integer(KairosJobs::UpdatedAt))
                .to_owned(),
            Table::create()
                .table(KairosRuns::Table)
                .if_not_exists()
                .col(big_pk_auto(KairosRuns::Id))
                .col(string(KairosRuns::Task))
                .col(string(KairosRuns::Queue))
                .col(big_integer_null(KairosRuns::JobId))
                .col(string(KairosRuns::Origin))
                .col(text(KairosRuns::Params))
                .col(text_null(KairosRuns::Tags))
                .col(string(KairosRuns::Status))
                .col(integer(KairosRuns::Priority))
                .col(big_integer(KairosRuns::RunAt))
                .col(big_integer(KairosRuns::ScheduledFor))
                .col(integer(KairosRuns::Attempt))
                .col(integer(KairosRuns::MaxRetries))
                .col(big_integer(KairosRuns::RetryDelayMs))
                .col(big_integer(KairosRuns::TimeoutMs))
                .col(string_null(KairosRuns::NodeId))
                .col(big_integer_null(KairosRuns::LeaseUntil))
                .col(boolean(KairosRuns::CancelRequested))
                .col(string_null(KairosRuns::IdempotencyKey))
                .col(text_null(KairosRuns::Result))
                .col(text_null(KairosRuns::Error))
                .col(big_integer(KairosRuns::CreatedAt))
                .col(big_integer_null(KairosRuns::StartedAt))
                .col(big_integer_null(KairosRuns::FinishedAt))
                .to_owned(),
            Table::create()
                .table(KairosRunTags::Table)
                .if_not_exists()
                .col(big_integer(KairosRunTags::RunId))
                .col(string(KairosRunTags::Key))
                .col(string(KairosRunTags::Value))
                .primary_key(
                    Index::create()
                        .col(KairosRunTags::RunId)
                        .col(KairosRunTags::Key),
                )
                .to_owned(),
            Table::create()
                .table(KairosRunHistory::Table)
                .if_not_exists()
                .col(big_pk_auto(KairosRunHistory::Id))
                .col(big_integer(KairosRunHistory::RunId))
                .col(integer(KairosRunHistory::Attempt))
                .col(big_integer(KairosRunHistory::At))
                .col(string(KairosRunHistory::Event))
                .col(text_null(KairosRunHistory::Message))
                .col(string_null(KairosRunHistory::NodeId))
                .to_owned(),
            Table::create()
                .table(KairosJobSlots::Table)
                .if_not_exists()
                .col(big_pk_auto(KairosJobSlots::Id))
                .col(big_integer(KairosJobSlots::JobId))
                .col(big_integer(KairosJobSlots::FirstSlot))
                .col(big_integer(KairosJobSlots::LastSlot))
                .col(string(KairosJobSlots::Outcome))
                .col(string_null(KairosJobSlots::Reason))
                .col(big_integer_null(KairosJobSlots::RunId))
                .col(big_integer(KairosJobSlots::RecordedAt))
                .to_owned(),
            Table::create()
                .table(KairosQueues::Table)
                .if_not_exists()
                .col(string(KairosQueues::Name).primary_key())
                .col(integer_null(KairosQueues::Concurrency))
                .col(integer_null(KairosQueues::RateLimit))
                .col(big_integer_null(KairosQueues::RateWindowMs))
                .col(boolean(KairosQueues::Paused))
                .col(big_integer(KairosQueues::UpdatedAt))
                .to_owned(),
            Table::create()
                .table(KairosQueueStarts::Table)
                .if_not_exists()
                .col(big_pk_auto(KairosQueueStarts::Id))
                .col(string(KairosQueueStarts::Queue))
                .col(big_integer(KairosQueueStarts::At))
                .to_owned(),
            Table::create()
                .table(KairosNodes::Table)
                .if_not_exists()
                .col(string(KairosNodes::Id).primary_key())
                .col(string(KairosNodes::Hostname))
                .col(integer(KairosNodes::Pid))
                .col(string(KairosNodes::Version))
                .col(integer(KairosNodes::MaxWorkers))
                .col(string(KairosNodes::Status))
                .col(boolean(KairosNodes::Paused))
                .col(big_integer(KairosNodes::StartedAt))
                .col(big_integer(KairosNodes::HeartbeatAt))
                .to_owned(),
            Table::create()
                .table(KairosTasks::Table)
                .if_not_exists()
                .col(string(KairosTasks::Name).primary_key())
                .col(string(KairosTasks::Queue))
                .col(integer(KairosTasks::Priority))
                .col(integer(KairosTasks::MaxRetries))
                .col(big_integer(KairosTasks::RetryDelayMs))
                .col(big_integer(KairosTasks::TimeoutMs))
                .col(integer_null(KairosTasks::MaxInstances))
                .col(string(KairosTasks::Misfire))
                .col(integer(KairosTasks::MaxCatchUp))
                .col(big_integer(KairosTasks::MisfireGraceMs))
                .col(string(KairosTasks::Overlap))
                .col(text(KairosTasks::ParamsSchema))
                .col(string(KairosTasks::Location))
                .col(big_integer(KairosTasks::UpdatedAt))
                .to_owned(),
            Table::create()
                .table(KairosMeta::Table)
                .if_not_exists()
                .col(string(KairosMeta::Key).primary_key())
                .col(big_integer(KairosMeta::Value))
                .to_owned(),
        ]
    }
}

/// Run insight: expiry, progress, stage, checkpoints, webhooks, per-run logs, and the
/// event log other processes read.
mod m20261128_000002_run_insight {
    use super::*;

    pub(super) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261128_000002_run_insight"
        }
    }

    /// `(table, column, SQL type)` added by this migration.
    const COLUMNS: &[(&str, &str, &str)] = &[
        ("kairos_runs", "expires_at", "BIGINT"),
        ("kairos_runs", "progress", "INTEGER"),
        ("kairos_runs", "progress_message", "TEXT"),
        ("kairos_runs", "stage", "TEXT"),
        ("kairos_runs", "checkpoint", "TEXT"),
        ("kairos_runs", "callback_url", "TEXT"),
        ("kairos_jobs", "callback_url", "TEXT"),
    ];

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            let db = manager.get_connection();
            // `ADD COLUMN` has no `IF NOT EXISTS` on SQLite: ask first, so that running
            // the migration again (a repair) is harmless.
            for (table, column, ty) in COLUMNS {
                if !manager.has_column(table, column).await? {
                    db.execute_unprepared(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))
                        .await?;
                }
            }
            for table in [
                Table::create()
                    .table("kairos_run_logs")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(big_integer("run_id"))
                    .col(integer("attempt"))
                    .col(big_integer("at"))
                    .col(string("level"))
                    .col(text("message"))
                    .to_owned(),
                Table::create()
                    .table("kairos_deliveries")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(big_integer("run_id"))
                    .col(text("url"))
                    .col(integer("attempt"))
                    .col(big_integer("at"))
                    .col(integer_null("status_code"))
                    .col(text_null("error"))
                    .col(boolean("delivered"))
                    .to_owned(),
                Table::create()
                    .table("kairos_events")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(big_integer("at"))
                    .col(string("kind"))
                    .col(big_integer_null("run_id"))
                    .col(string_null("job"))
                    .col(string_null("task"))
                    .col(string_null("node_id"))
                    .col(text("data"))
                    .to_owned(),
                Table::create()
                    .table("kairos_subscribers")
                    .if_not_exists()
                    .col(string("id").primary_key())
                    .col(big_integer("heartbeat_at"))
                    .to_owned(),
            ] {
                manager.create_table(table).await?;
            }
            for (_, sql) in INSIGHT_INDEXES {
                db.execute_unprepared(sql).await?;
            }
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            let db = manager.get_connection();
            for t in [
                "kairos_subscribers",
                "kairos_events",
                "kairos_deliveries",
                "kairos_run_logs",
            ] {
                db.execute_unprepared(&format!("DROP TABLE IF EXISTS {t}"))
                    .await?;
            }
            Ok(())
        }
    }
}

/// PostgreSQL only: the database tells listening nodes when runs are inserted (by any
/// process, in any transaction, on commit) and when the change counter moves (pauses,
/// cancels, job changes), so that an idle node wakes at once instead of polling. One
/// notification per statement, and identical ones in a transaction fold into one. The
/// payload is `<table> <application_name>`: a node names its connections, and ignores
/// what it did itself (it already knows).
mod m20261129_000003_notify {
    use super::*;

    pub(super) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261129_000003_notify"
        }
    }

    /// The channel the notifications go to.
    pub(crate) const CHANNEL: &str = "kairos";

    /// The trigger function as this migration creates it (a later one changes it, and
    /// puts this back when undone).
    pub(super) const FUNCTION: &str = "CREATE OR REPLACE FUNCTION kairos_notify() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_notify('kairos', TG_TABLE_NAME || ' ' || current_setting('application_name')); \
         RETURN NULL; END $$";

    const UP: &[&str] = &[
        FUNCTION,
        "DROP TRIGGER IF EXISTS kairos_runs_notify ON kairos_runs",
        "CREATE TRIGGER kairos_runs_notify AFTER INSERT ON kairos_runs \
         FOR EACH STATEMENT EXECUTE FUNCTION kairos_notify()",
        "DROP TRIGGER IF EXISTS kairos_meta_notify ON kairos_meta",
        "CREATE TRIGGER kairos_meta_notify AFTER UPDATE ON kairos_meta \
         FOR EACH STATEMENT EXECUTE FUNCTION kairos_notify()",
    ];

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            on_postgres(manager, UP).await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            on_postgres(
                manager,
                &[
                    "DROP TRIGGER IF EXISTS kairos_runs_notify ON kairos_runs",
                    "DROP TRIGGER IF EXISTS kairos_meta_notify ON kairos_meta",
                    "DROP FUNCTION IF EXISTS kairos_notify()",
                ],
            )
            .await
        }
    }
}

pub(crate) use m20261129_000003_notify::CHANNEL as NOTIFY_CHANNEL;

/// Indexes the lean-indexes migration creates in place of [`REPLACED_INDEXES`].
pub(crate) const LEAN_INDEXES: &[(&str, &str)] = &[
    // The next due time of queued runs. Its predicate carries a clause the claim does
    // not state (`attempt >= 0`, true of every run), so that PostgreSQL can never take
    // it for the claim: with statistics from a moment when no run was queued (after a
    // burst, before autovacuum analyses), it used to pick this index and sort every
    // queued run at each claim (6,500 instead of 20,000 runs/s draining 100,000 runs)
    // instead of following the claim index in order.
    (
        "kairos_runs_next_due",
        "CREATE INDEX IF NOT EXISTS kairos_runs_next_due ON kairos_runs (run_at) \
         WHERE status = 'queued' AND attempt >= 0",
    ),
    // One run per slot of a job. One-off runs (no job) are left out of the index: they
    // cannot collide, and each of a run's three row versions saves an index entry.
    (
        "kairos_runs_job_slot_once",
        "CREATE UNIQUE INDEX IF NOT EXISTS kairos_runs_job_slot_once ON kairos_runs \
         (job_id, scheduled_for) WHERE job_id IS NOT NULL",
    ),
];

/// Indexes of earlier migrations that [`LEAN_INDEXES`] replace.
pub(crate) const REPLACED_INDEXES: &[&str] = &["kairos_runs_due", "kairos_runs_job_slot"];

/// Leaner indexes on `kairos_runs`, the hot table (see [`LEAN_INDEXES`]). Each new index
/// is built before the one it replaces is dropped, so a slot is never left without its
/// unique index.
mod m20261129_000004_lean_indexes {
    use super::*;

    pub(super) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261129_000004_lean_indexes"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            let db = manager.get_connection();
            for (_, sql) in LEAN_INDEXES {
                db.execute_unprepared(sql).await?;
            }
            for name in REPLACED_INDEXES {
                db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                    .await?;
            }
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            let db = manager.get_connection();
            for (name, sql) in INDEXES {
                if REPLACED_INDEXES.contains(name) {
                    db.execute_unprepared(sql).await?;
                }
            }
            for (name, _) in LEAN_INDEXES {
                db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                    .await?;
            }
            Ok(())
        }
    }
}

/// PostgreSQL only: kairos's own inserts of runs announce the ids they add (see
/// `runs::announce`), and the `notify` trigger stands down for them; runs inserted by
/// other means (an older node, plain SQL) are still announced by the trigger, without
/// ids. Also has autovacuum visit `kairos_runs` after far fewer changes than its
/// default (a fifth of the table): every claimed run leaves a dead entry in the claim
/// index, which each claim steps over until vacuum removes it, so on a table of a
/// million finished runs the default let claims grow slower through hundreds of
/// thousands of claims. An operator's own value for either setting is kept, on upgrade
/// and when `kairos migrate` runs this again to repair the schema.
mod m20261130_000005_announced_runs {
    use super::*;

    pub(super) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261130_000005_announced_runs"
        }
    }

    const UP: &[&str] = &[
        "CREATE OR REPLACE FUNCTION kairos_notify() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
         IF current_setting('kairos.announced', true) = statement_timestamp()::text THEN \
         RETURN NULL; END IF; \
         PERFORM pg_notify('kairos', TG_TABLE_NAME || ' ' || current_setting('application_name')); \
         RETURN NULL; END $$",
        "DO $$ DECLARE opts text[]; BEGIN \
         SELECT coalesce(reloptions, '{}') INTO opts FROM pg_class \
         WHERE oid = 'kairos_runs'::regclass; \
         IF NOT EXISTS (SELECT 1 FROM unnest(opts) o \
         WHERE split_part(o, '=', 1) = 'autovacuum_vacuum_scale_factor') THEN \
         ALTER TABLE kairos_runs SET (autovacuum_vacuum_scale_factor = 0.01); END IF; \
         IF NOT EXISTS (SELECT 1 FROM unnest(opts) o \
         WHERE split_part(o, '=', 1) = 'autovacuum_vacuum_threshold') THEN \
         ALTER TABLE kairos_runs SET (autovacuum_vacuum_threshold = 1000); END IF; \
         END $$",
    ];

    const DOWN: &[&str] = &[
        super::m20261129_000003_notify::FUNCTION,
        "ALTER TABLE kairos_runs RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold)",
    ];

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            on_postgres(manager, UP).await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            on_postgres(manager, DOWN).await
        }
    }
}

/// Node names: what an operator calls a node (`[scheduler] node_name`), shown beside
/// its id. Nodes registered before keep no name; they list as `<hostname>:<pid>`.
mod m20261130_000006_node_names {
    use super::*;

    pub(super) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261130_000006_node_names"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            // Asked first, as `ADD COLUMN` has no `IF NOT EXISTS` on SQLite: running
            // this again (a repair) is harmless.
            if !manager.has_column("kairos_nodes", "name").await? {
                manager
                    .get_connection()
                    .execute_unprepared("ALTER TABLE kairos_nodes ADD COLUMN name TEXT")
                    .await?;
            }
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            if manager.has_column("kairos_nodes", "name").await? {
                manager
                    .get_connection()
                    .execute_unprepared("ALTER TABLE kairos_nodes DROP COLUMN name")
                    .await?;
            }
            Ok(())
        }
    }
}

/// Each node records the heartbeat timeout it was started with, so that tools judge
/// whether it is alive by its own settings rather than by the default.
mod m20261130_000007_node_heartbeat_timeouts {
    use super::*;

    pub(super) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261130_000007_node_heartbeat_timeouts"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            // Asked first, as `ADD COLUMN` has no `IF NOT EXISTS` on SQLite.
            if !manager
                .has_column("kairos_nodes", "heartbeat_timeout_ms")
                .await?
            {
                manager
                    .get_connection()
                    .execute_unprepared(
                        "ALTER TABLE kairos_nodes ADD COLUMN heartbeat_timeout_ms BIGINT",
                    )
                    .await?;
            }
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            if manager
                .has_column("kairos_nodes", "heartbeat_timeout_ms")
                .await?
            {
                manager
                    .get_connection()
                    .execute_unprepared("ALTER TABLE kairos_nodes DROP COLUMN heartbeat_timeout_ms")
                    .await?;
            }
            Ok(())
        }
    }
}

/// Indexes of [`m20261130_000008_former_jobs`].
pub(crate) const FORMER_JOB_INDEXES: &[(&str, &str)] = &[(
    "kairos_former_jobs_name",
    "CREATE INDEX IF NOT EXISTS kairos_former_jobs_name ON kairos_former_jobs (name)",
)];

/// Deleted jobs: their id and name. Runs kept past their job's deletion (`jobs delete
/// --keep-history`, or running at the time) still name their job and are found by it.
/// (Job ids are never handed out twice: a sequence on PostgreSQL, `AUTOINCREMENT` on
/// SQLite.)
mod m20261130_000008_former_jobs {
    use super::*;

    pub(super) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261130_000008_former_jobs"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            let db = manager.get_connection();
            db.execute_unprepared(
                "CREATE TABLE IF NOT EXISTS kairos_former_jobs (id BIGINT NOT NULL PRIMARY KEY, \
                 name TEXT NOT NULL, deleted_at BIGINT NOT NULL)",
            )
            .await?;
            for (_, sql) in FORMER_JOB_INDEXES {
                db.execute_unprepared(sql).await?;
            }
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .get_connection()
                .execute_unprepared("DROP TABLE IF EXISTS kairos_former_jobs")
                .await?;
            Ok(())
        }
    }
}

/// Runs `statements` in order on PostgreSQL; nothing on SQLite.
async fn on_postgres(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    let db = manager.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}
