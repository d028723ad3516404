//! The HTTP API: every operation of [`Admin`] over JSON, live events (Server-Sent
//! Events and WebSocket), Prometheus metrics, a health check and the OpenAPI document
//! describing all of it. `kairos serve` serves it; an application embeds it in its own
//! axum app with [`router`]:
//!
//! ```no_run
//! # async fn f(handle: kairos::SchedulerHandle) -> std::io::Result<()> {
//! use kairos::http::{HttpOptions, router};
//!
//! let api = router(
//!     handle.admin().clone(),
//!     HttpOptions::new().token(std::env::var("KAIROS_ADMIN_TOKEN").unwrap_or_default()),
//! );
//! let app = axum::Router::new().merge(api); // beside the application's own routes
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! This module owns the route table (one table feeds both the router and the OpenAPI
//! document, so they cannot disagree), the shared state and the layers every request
//! goes through: the body size limit, the token check (`auth`) and the rewriting of
//! every error into `{"error": {"code", "message", "details"}}` (`error`). The
//! endpoints live by area in private modules: `runs`, `jobs`, `cluster` (queues, nodes,
//! tasks), `insight` (stats, health, metrics) and `events`.

mod auth;
mod cluster;
mod dashboard;
mod error;
mod events;
mod input;
mod insight;
mod jobs;
mod openapi;
mod runs;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
/// The token [`HttpOptions::stop_streams`] takes, re-exported so an application needs no
/// `tokio-util` of its own.
pub use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::ops::Admin;

/// The default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// How the API is exposed: the bearer token, whether reads need it, the body limit.
#[derive(Clone, Default)]
pub struct HttpOptions {
    token: Option<String>,
    protect_reads: bool,
    body_limit: Option<usize>,
    /// Cancelled when the server shuts down: live event streams end then.
    stop: Option<CancellationToken>,
}

impl std::fmt::Debug for HttpOptions {
    // The token never appears in logs, even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("protect_reads", &self.protect_reads)
            .field("body_limit", &self.limit())
            .finish()
    }
}

impl HttpOptions {
    /// No token (every endpoint open, but only to requests addressed to a loopback
    /// name or address such as `localhost` or `127.0.0.1`: keep such a server on a
    /// loopback address), reads open, bodies up to [`DEFAULT_BODY_LIMIT`].
    pub fn new() -> Self {
        HttpOptions::default()
    }

    /// Requires `Authorization: Bearer <token>` on every mutating request (and on
    /// reads with [`HttpOptions::protect_reads`]). An empty string means no token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let t = token.into();
        self.token = (!t.is_empty()).then_some(t);
        self
    }

    /// Requires the token on read-only endpoints too (`GET /health` and the OpenAPI
    /// document stay open).
    pub fn protect_reads(mut self, yes: bool) -> Self {
        self.protect_reads = yes;
        self
    }

    /// The largest request body accepted, in bytes; larger ones get 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Ends every live event stream (SSE and WebSocket) when `stop` is cancelled.
    /// Cancel it when the server begins a graceful shutdown: the shutdown waits for
    /// open requests, and event streams never end by themselves.
    pub fn stop_streams(mut self, stop: CancellationToken) -> Self {
        self.stop = Some(stop);
        self
    }

    fn limit(&self) -> usize {
        self.body_limit.unwrap_or(DEFAULT_BODY_LIMIT)
    }
}

/// What every handler sees.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) admin: Admin,
    pub(crate) opts: Arc<HttpOptions>,
    pub(crate) hub: Arc<events::Hub>,
    /// Cancelled on shutdown (never, unless the options say when).
    pub(crate) stop: CancellationToken,
    /// The OpenAPI document, rendered once.
    pub(crate) openapi: Arc<String>,
}

/// The single route table: each `routes!` entry adds a handler to the router and its
/// `#[utoipa::path]` description to the document.
fn routes() -> OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(runs::create, runs::list))
        .routes(routes!(runs::batch))
        .routes(routes!(runs::cleanup))
        .routes(routes!(runs::show, runs::delete))
        .routes(routes!(runs::logs))
        .routes(routes!(runs::cancel))
        .routes(routes!(runs::retry))
        .routes(routes!(jobs::list, jobs::create))
        .routes(routes!(jobs::show, jobs::update, jobs::delete))
        .routes(routes!(jobs::pause))
        .routes(routes!(jobs::resume))
        .routes(routes!(jobs::trigger))
        .routes(routes!(jobs::slots))
        .routes(routes!(cluster::queues))
        .routes(routes!(cluster::pause_queue))
        .routes(routes!(cluster::resume_queue))
        .routes(routes!(cluster::nodes))
        .routes(routes!(cluster::pause_node))
        .routes(routes!(cluster::resume_node))
        .routes(routes!(cluster::pause_nodes))
        .routes(routes!(cluster::resume_nodes))
        .routes(routes!(cluster::tasks))
        .routes(routes!(insight::stats))
        .routes(routes!(insight::health))
        .routes(routes!(insight::metrics))
        .routes(routes!(openapi::document))
        .routes(routes!(events::sse))
        .routes(routes!(events::ws))
}

/// The OpenAPI 3.1 document of the API, as `GET /api/v1/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes().into_openapi();
    openapi::complete(&mut doc);
    doc
}

/// The API as an axum router over `admin`: mount it in an application's own axum app,
/// or serve it alone (as `kairos serve` does).
///
/// With the admin of a running node ([`SchedulerHandle::admin`](crate::SchedulerHandle::admin)),
/// changes reach that node at once and live events come from its stream (which carries
/// other processes' events too); with one from [`Admin::connect`], events are read
/// from the database's event log while somebody listens.
///
/// The router binds nothing: the caller chooses the address. Without a token, keep it
/// on a loopback address: it then answers only requests whose `Host` is a loopback name
/// or address (403 otherwise), so that no web page can reach it through DNS rebinding.
pub fn router(admin: Admin, opts: HttpOptions) -> axum::Router {
    router_and_hub(admin, opts).0
}

/// The router and its event hub, for a server that waits for the hub to close.
pub(crate) fn router_and_hub(admin: Admin, opts: HttpOptions) -> (axum::Router, Arc<events::Hub>) {
    let (router, mut doc) = routes().split_for_parts();
    openapi::complete(&mut doc);
    let rendered = doc
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    let limit = opts.limit();
    let stop = opts.stop.clone().unwrap_or_default();
    let hub = Arc::new(events::Hub::new(admin.clone(), stop.clone()));
    let state = AppState {
        hub: hub.clone(),
        stop,
        admin,
        opts: Arc::new(opts),
        openapi: Arc::new(rendered),
    };
    let router = router
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn(input::no_query_on_changes))
        .layer(axum::middleware::from_fn(input::json_bodies_only))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(error::json_errors))
        .merge(dashboard::routes())
        .with_state(state);
    (router, hub)
}
