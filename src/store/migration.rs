//! Schema migrations, applied on start-up (and by `kairos migrate`). Migrations are
//! append-only: a released one is never edited, a change is a new dated migration.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The kairos migrator; its history table is `kairos_migrations`.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261126_000001_init::Migration)]
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
    IntervalMs,
    AnchorAt,
    Params,
    Enabled,
    Paused,
    Priority,
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
    JobId,
    Params,
    Status,
    Priority,
    Queue,
    RunAt,
    ScheduledFor,
    Attempt,
    MaxRetries,
    RetryDelayMs,
    TimeoutMs,
    NodeId,
    LeaseUntil,
    CancelRequested,
    Result,
    Error,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum KairosRunLogs {
    Table,
    Id,
    RunId,
    Attempt,
    At,
    Level,
    Message,
}

#[derive(DeriveIden)]
enum KairosNodes {
    Table,
    Id,
    Hostname,
    Pid,
    MaxWorkers,
    Status,
    StartedAt,
    HeartbeatAt,
}

#[derive(DeriveIden)]
enum KairosTasks {
    Table,
    Name,
    Priority,
    MaxRetries,
    RetryDelayMs,
    TimeoutMs,
    MaxInstances,
    Queue,
    Location,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum KairosMeta {
    Table,
    Key,
    Value,
}

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
            manager
                .create_table(
                    Table::create()
                        .table(KairosJobs::Table)
                        .if_not_exists()
                        .col(big_pk_auto(KairosJobs::Id))
                        .col(string_uniq(KairosJobs::Name))
                        .col(string(KairosJobs::Task))
                        .col(string(KairosJobs::Kind))
                        .col(string_null(KairosJobs::Cron))
                        .col(string_null(KairosJobs::Timezone))
                        .col(big_integer_null(KairosJobs::IntervalMs))
                        .col(big_integer_null(KairosJobs::AnchorAt))
                        .col(text(KairosJobs::Params))
                        .col(boolean(KairosJobs::Enabled))
                        .col(boolean(KairosJobs::Paused))
                        .col(integer_null(KairosJobs::Priority))
                        .col(string(KairosJobs::Source))
                        .col(big_integer_null(KairosJobs::NextRunAt))
                        .col(big_integer_null(KairosJobs::LastFiredAt))
                        .col(big_integer(KairosJobs::Version))
                        .col(big_integer(KairosJobs::CreatedAt))
                        .col(big_integer(KairosJobs::UpdatedAt))
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table(KairosRuns::Table)
                        .if_not_exists()
                        .col(big_pk_auto(KairosRuns::Id))
                        .col(string(KairosRuns::Task))
                        .col(big_integer_null(KairosRuns::JobId))
                        .col(text(KairosRuns::Params))
                        .col(string(KairosRuns::Status))
                        .col(integer(KairosRuns::Priority))
                        .col(string_null(KairosRuns::Queue))
                        .col(big_integer(KairosRuns::RunAt))
                        .col(big_integer(KairosRuns::ScheduledFor))
                        .col(integer(KairosRuns::Attempt))
                        .col(integer(KairosRuns::MaxRetries))
                        .col(big_integer(KairosRuns::RetryDelayMs))
                        .col(big_integer(KairosRuns::TimeoutMs))
                        .col(string_null(KairosRuns::NodeId))
                        .col(big_integer_null(KairosRuns::LeaseUntil))
                        .col(boolean(KairosRuns::CancelRequested))
                        .col(text_null(KairosRuns::Result))
                        .col(text_null(KairosRuns::Error))
                        .col(big_integer(KairosRuns::CreatedAt))
                        .col(big_integer_null(KairosRuns::StartedAt))
                        .col(big_integer_null(KairosRuns::FinishedAt))
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table(KairosRunLogs::Table)
                        .if_not_exists()
                        .col(big_pk_auto(KairosRunLogs::Id))
                        .col(big_integer(KairosRunLogs::RunId))
                        .col(integer(KairosRunLogs::Attempt))
                        .col(big_integer(KairosRunLogs::At))
                        .col(string(KairosRunLogs::Level))
                        .col(text(KairosRunLogs::Message))
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table(KairosNodes::Table)
                        .if_not_exists()
                        .col(string(KairosNodes::Id).primary_key())
                        .col(string(KairosNodes::Hostname))
                        .col(integer(KairosNodes::Pid))
                        .col(integer(KairosNodes::MaxWorkers))
                        .col(string(KairosNodes::Status))
                        .col(big_integer(KairosNodes::StartedAt))
                        .col(big_integer(KairosNodes::HeartbeatAt))
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table(KairosTasks::Table)
                        .if_not_exists()
                        .col(string(KairosTasks::Name).primary_key())
                        .col(integer(KairosTasks::Priority))
                        .col(integer(KairosTasks::MaxRetries))
                        .col(big_integer(KairosTasks::RetryDelayMs))
                        .col(big_integer(KairosTasks::TimeoutMs))
                        .col(integer_null(KairosTasks::MaxInstances))
                        .col(string_null(KairosTasks::Queue))
                        .col(string(KairosTasks::Location))
                        .col(big_integer(KairosTasks::UpdatedAt))
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table(KairosMeta::Table)
                        .if_not_exists()
                        .col(string(KairosMeta::Key).primary_key())
                        .col(big_integer(KairosMeta::Value))
                        .to_owned(),
                )
                .await?;
            let db = manager.get_connection();
            // Partial indexes keep the hot queries independent of how many finished
            // runs the table holds: claims read only queued rows, lease checks only
            // running ones. The unique (job_id, scheduled_for) index is the last line of
            // exactly-once firing.
            for sql in [
                "CREATE UNIQUE INDEX IF NOT EXISTS kairos_runs_job_slot ON kairos_runs (job_id, scheduled_for)",
                "CREATE INDEX IF NOT EXISTS kairos_runs_claim ON kairos_runs (priority, run_at, id) WHERE status = 'queued'",
                "CREATE INDEX IF NOT EXISTS kairos_runs_due ON kairos_runs (run_at) WHERE status = 'queued'",
                "CREATE INDEX IF NOT EXISTS kairos_runs_running ON kairos_runs (node_id, task) WHERE status = 'running'",
                "CREATE INDEX IF NOT EXISTS kairos_runs_finished ON kairos_runs (status, finished_at) WHERE finished_at IS NOT NULL",
                "CREATE INDEX IF NOT EXISTS kairos_runs_task ON kairos_runs (task, id)",
                "CREATE INDEX IF NOT EXISTS kairos_jobs_next ON kairos_jobs (next_run_at) WHERE enabled AND NOT paused",
                "CREATE INDEX IF NOT EXISTS kairos_run_logs_run ON kairos_run_logs (run_id, id)",
                "INSERT INTO kairos_meta (key, value) VALUES ('change_seq', 0)",
            ] {
                db.execute_unprepared(sql).await?;
            }
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            for t in [
                "kairos_meta",
                "kairos_nodes",
                "kairos_tasks",
                "kairos_run_logs",
                "kairos_runs",
                "kairos_jobs",
            ] {
                manager
                    .get_connection()
                    .execute_unprepared(&format!("DROP TABLE IF EXISTS {t}"))
                    .await?;
            }
            Ok(())
        }
    }
}
