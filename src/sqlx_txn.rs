//! Enqueueing in an application's own sqlx transaction: [`SqlxTxn`] lends a sqlx
//! connection (normally a transaction) to [`Admin::enqueue_in`](crate::Admin::enqueue_in)
//! and [`SchedulerHandle::enqueue_in`](crate::SchedulerHandle::enqueue_in), which take
//! any SeaORM connection, so that applications written on sqlx alone get the same
//! guarantee as SeaORM ones: the run exists if and only if the transaction commits.
//!
//! kairos's statements are built as SeaORM statements; this adapter runs them on the
//! borrowed connection, binding their values the way SeaORM's own drivers do. A node
//! also runs its claims through it on its notification listener's connection.

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::sqlx::{self, PgConnection, SqliteConnection};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

/// A sqlx connection on kairos's database, borrowed for the enqueues of one
/// transaction.
///
/// ```no_run
/// # async fn f(pool: kairos::sea_orm::sqlx::PgPool, admin: kairos::Admin) -> anyhow::Result<()> {
/// use kairos::sea_orm::sqlx;
/// let mut tx = pool.begin().await?;
/// sqlx::query("INSERT INTO orders (id) VALUES (42)").execute(&mut *tx).await?;
/// admin
///     .enqueue_in(
///         &kairos::SqlxTxn::postgres(&mut tx),
///         kairos::Enqueue::new("ship_order").params(serde_json::json!({"order": 42})),
///     )
///     .await?;
/// tx.commit().await?; // both, or neither
/// # Ok(()) }
/// ```
///
/// It must be the sqlx that kairos uses (`kairos::sea_orm::sqlx`, or the same version
/// of the `sqlx` crate).
pub struct SqlxTxn<'c> {
    // `ConnectionTrait` lends `&self`; the statements need the connection mutably,
    // one at a time.
    conn: Mutex<Conn<'c>>,
    backend: DbBackend,
}

enum Conn<'c> {
    Postgres(&'c mut PgConnection),
    Sqlite(&'c mut SqliteConnection),
    /// A node's listening connection, on which the node claims announced runs.
    Listener(&'c mut PgListener),
}

impl std::fmt::Debug for SqlxTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlxTxn")
            .field("backend", &self.backend)
            .finish()
    }
}

impl<'c> SqlxTxn<'c> {
    /// A PostgreSQL connection or transaction (`&mut tx` for a
    /// `sqlx::Transaction<'_, Postgres>`).
    pub fn postgres(conn: &'c mut PgConnection) -> SqlxTxn<'c> {
        SqlxTxn {
            conn: Mutex::new(Conn::Postgres(conn)),
            backend: DbBackend::Postgres,
        }
    }

    /// A node's notification listener, whose connection also runs kairos's own
    /// statements (see `runtime::listener`).
    pub(crate) fn listener(listener: &'c mut PgListener) -> SqlxTxn<'c> {
        SqlxTxn {
            conn: Mutex::new(Conn::Listener(listener)),
            backend: DbBackend::Postgres,
        }
    }

    /// A SQLite connection or transaction (`&mut tx` for a
    /// `sqlx::Transaction<'_, Sqlite>`).
    pub fn sqlite(conn: &'c mut SqliteConnection) -> SqlxTxn<'c> {
        SqlxTxn {
            conn: Mutex::new(Conn::Sqlite(conn)),
            backend: DbBackend::Sqlite,
        }
    }
}

fn db_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(e.into()))
}

fn values(stmt: &Statement) -> SqlxValues {
    SqlxValues(stmt.values.clone().unwrap_or(sea_orm::Values(Vec::new())))
}

/// Runs `$body` with `$c` bound to the borrowed connection, whichever engine it is on
/// (the same code, typed for each).
macro_rules! on_conn {
    ($self:ident, $c:ident => $body:expr) => {
        match &mut *$self.conn.lock().await {
            Conn::Postgres($c) => $body,
            Conn::Sqlite($c) => $body,
            Conn::Listener($c) => $body,
        }
        .map_err(db_err)
    };
}

#[sea_orm::prelude::async_trait::async_trait]
impl ConnectionTrait for SqlxTxn<'_> {
    fn get_database_backend(&self) -> DbBackend {
        self.backend
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let sql = sqlx::AssertSqlSafe(stmt.sql.as_str());
        on_conn!(self, c => sqlx::query_with(sql, values(&stmt))
            .execute(&mut **c)
            .await
            .map(Into::into))
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        use sqlx::Executor;
        on_conn!(self, c => c
            .execute(sqlx::AssertSqlSafe(sql.to_string()))
            .await
            .map(Into::into))
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let sql = sqlx::AssertSqlSafe(stmt.sql.as_str());
        on_conn!(self, c => sqlx::query_with(sql, values(&stmt))
            .fetch_optional(&mut **c)
            .await
            .map(|r| r.map(Into::into)))
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let sql = sqlx::AssertSqlSafe(stmt.sql.as_str());
        on_conn!(self, c => sqlx::query_with(sql, values(&stmt))
            .fetch_all(&mut **c)
            .await
            .map(|rows| rows.into_iter().map(Into::into).collect()))
    }
}
