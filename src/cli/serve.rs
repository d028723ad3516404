//! `kairos serve [--bind 127.0.0.1:8080]`: the HTTP API (see [`crate::http`]) over the
//! database and configuration the other commands use, until Ctrl-C or SIGTERM.
//!
//! It binds a loopback address by default. Binding any other address without a token
//! is refused: the API can enqueue, cancel and delete, and a scheduler's admin port on
//! an open network without a secret is an incident waiting to happen.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::output::{CliError, Out};
use crate::http::{DEFAULT_BODY_LIMIT, HttpOptions};
use crate::ops::Admin;

/// Environment variable holding the API's bearer token.
pub(super) const TOKEN_ENV: &str = "KAIROS_ADMIN_TOKEN";

/// How long open requests may delay a shutdown. Event streams end at once when it
/// starts; this bounds anything else still running (a slow query).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `--bind`: an IP address and port; `localhost:PORT` means 127.0.0.1. Other host names
/// are not resolved (one name may stand for several addresses, loopback or not).
fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    if let Some(port) = s.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(match s.parse::<u16>() {
        Ok(port) => format!("give an address with the port, such as 127.0.0.1:{port}"),
        Err(_) => "give an IP address and port, such as 127.0.0.1:8080 or [::1]:8080 \
                   (host names other than localhost are not resolved)"
            .to_string(),
    })
}

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address and port to listen on; anything but a loopback address needs a token.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_bind)]
    bind: SocketAddr,
    /// Bearer token required on mutating endpoints (prefer the environment variable or
    /// --token-file: command lines are visible to other users of the machine).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<Secret>,
    /// Read the token from this file (its first line); takes precedence over
    /// --token and KAIROS_ADMIN_TOKEN.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Require the token on read-only endpoints too (/health and the OpenAPI document
    /// stay open).
    #[arg(long)]
    protect_reads: bool,
    /// Largest request body accepted, in bytes (larger ones get 413).
    #[arg(long, default_value_t = DEFAULT_BODY_LIMIT as u64, value_parser = clap::value_parser!(u64).range(1..=1_073_741_824))]
    body_limit: u64,
    /// `[http] token` from jobs.toml, the last resort.
    #[arg(skip)]
    config_token: Option<Secret>,
}

/// A token that never shows in `{:?}` (the parsed arguments derive `Debug`).
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

#[derive(Serialize)]
struct Listening {
    listening: String,
    token: bool,
    protect_reads: bool,
}

impl ServeArgs {
    /// Takes `[http] token` from the configuration, used when no flag or environment
    /// variable gives one.
    pub(super) fn with_config(&mut self, http: &crate::config::HttpConfig) {
        self.config_token = http.token.clone().map(Secret);
    }

    /// The token, from the file, the flag or the environment, else the configuration.
    fn token(&self) -> Result<Option<String>, CliError> {
        let token = match &self.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CliError::usage(format!("--token-file: cannot read {}: {e}", path.display()))
                })?;
                Some(text.lines().next().unwrap_or("").trim().to_string())
            }
            None => self
                .token
                .as_ref()
                .or(self.config_token.as_ref())
                // Spaces around it are no part of a token (the header's are trimmed):
                // one of spaces only is empty.
                .map(|t| t.0.trim().to_string()),
        };
        match token {
            Some(t) if t.is_empty() => Err(CliError::usage(format!(
                "the token is empty; set {TOKEN_ENV} (or --token-file) to a long random \
                 string, or leave it unset on a loopback address"
            ))),
            t => Ok(t),
        }
    }

    /// Refuses what must not start: a non-loopback address without a token, or read
    /// protection without a token. Checked before the database is opened.
    pub(super) fn check(&self) -> Result<(), CliError> {
        let token = self.token()?;
        if token.is_none() && !self.bind.ip().is_loopback() {
            return Err(CliError::usage(format!(
                "refusing to serve the API on {} without a token: anyone who can reach it \
                 could enqueue, cancel and delete runs. Set {TOKEN_ENV} (or --token-file), \
                 or bind a loopback address such as 127.0.0.1:{}",
                self.bind,
                self.bind.port()
            )));
        }
        if token.is_none() && self.protect_reads {
            return Err(CliError::usage(format!(
                "--protect-reads needs a token: set {TOKEN_ENV} or --token-file"
            )));
        }
        Ok(())
    }
}

pub(super) async fn run(args: ServeArgs, admin: Admin, out: &mut Out<'_>) -> Result<(), CliError> {
    args.check()?;
    let mut opts = HttpOptions::new()
        .protect_reads(args.protect_reads)
        .body_limit(usize::try_from(args.body_limit).unwrap_or(DEFAULT_BODY_LIMIT));
    if let Some(t) = args.token()? {
        opts = opts.token(t);
    }
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| CliError::new("bind", format!("cannot listen on {}: {e}", args.bind)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::new("bind", format!("cannot read the bound address: {e}")))?;
    let info = Listening {
        listening: format!("http://{addr}"),
        token: opts.has_token(),
        protect_reads: args.protect_reads,
    };
    out.print_line(&info, || {
        format!(
            "serving the kairos API on http://{addr} ({}); Ctrl-C stops",
            match (info.token, info.protect_reads) {
                (false, _) => "no token: loopback only",
                (true, false) => "token required for changes",
                (true, true) => {
                    "token required for reads too (not for /health, the OpenAPI document or the dashboard's page, whose data calls need it)"
                }
            }
        )
    })?;
    let stop = tokio_util::sync::CancellationToken::new();
    let (app, hub) = crate::http::router_and_hub(admin, opts.stop_streams(stop.clone()));
    let server = axum::serve(listener, app).with_graceful_shutdown({
        let stop = stop.clone();
        async move { stop.cancelled().await }
    });
    let server = tokio::spawn(async move { server.await });
    shutdown_signal().await;
    stop.cancel();
    // The cancelled token also ends the event streams, which never end by themselves;
    // other open requests get a moment, then the process goes.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, server).await;
    // Leave the event subscribers, so nodes stop writing events for this process now
    // rather than when its subscription expires.
    let _ = tokio::time::timeout(Duration::from_secs(1), hub.closed()).await;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::parse_bind;

    #[test]
    fn bind_takes_an_address_or_localhost_and_says_what_to_give_otherwise() {
        assert_eq!(parse_bind("0.0.0.0:80").unwrap().to_string(), "0.0.0.0:80");
        assert_eq!(parse_bind("[::1]:8080").unwrap().to_string(), "[::1]:8080");
        assert_eq!(
            parse_bind("localhost:9000").unwrap().to_string(),
            "127.0.0.1:9000"
        );
        assert_eq!(
            parse_bind("8080").unwrap_err(),
            "give an address with the port, such as 127.0.0.1:8080"
        );
        let e = parse_bind("example.com:80").unwrap_err();
        assert!(e.contains("such as 127.0.0.1:8080"), "{e}");
        assert!(parse_bind("localhost:http").is_err());
    }
}
