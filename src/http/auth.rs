//! Who may call what. With a token configured, every mutating request needs
//! `Authorization: Bearer <token>` (missing: 401, wrong: 403); read-only requests
//! need it too when reads are protected. `GET /health` and the OpenAPI document stay
//! open, so load balancers and client generators work without the secret.
//!
//! The token is compared in constant time and never logged or echoed. Independently
//! of the token, a mutating request that a browser sends from another origin is
//! refused: without that, any web page could make a browser on the operator's
//! machine post to a loopback API that has no token. So is a WebSocket handshake from
//! another origin, which browsers allow any page to make.
//!
//! # Without a token: loopback names only
//! The origin rule alone does not protect a token-less server from DNS rebinding: a
//! page on `evil.example` whose name is then pointed at 127.0.0.1 is same-origin with
//! the API as far as the browser knows, and sends `Origin` and `Host` that agree. What
//! gives it away is the `Host` header, which names the attacker's domain. So without a
//! token, every request but the open ones (`/health`, the OpenAPI document, which hold
//! no secrets and change nothing) must address the server by a loopback name or
//! address: `localhost`, `*.localhost`, 127.0.0.0/8 or `[::1]`. A browser cannot be
//! made to send those for another site's page, and reads are covered too, since a
//! rebound page could read every answer. With a token, the token guards changes (and
//! reads with `protect_reads`), and the server may sit behind any name.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Nothing.
    Open,
    /// The token when reads are protected.
    Read,
    /// The token whenever one is set.
    Write,
}

fn access(method: &Method, path: &str) -> Access {
    let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if read && (path == "/health" || path == "/api/v1/openapi.json") {
        Access::Open
    } else if read {
        Access::Read
    } else {
        Access::Write
    }
}

/// Checks the request against the host rule, the token and the origin rule before any
/// handler runs.
pub(crate) async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let needed = access(req.method(), req.uri().path());
    if state.opts.token.is_none()
        && needed != Access::Open
        && let Err(e) = loopback_host(&req)
    {
        return e.into_response();
    }
    // Browsers apply no same-origin rule to WebSockets: any page may open one and read
    // what it carries, so a handshake is held to the rule of a change.
    if (needed == Access::Write || is_websocket(&req))
        && let Err(e) = same_origin(&req)
    {
        return e.into_response();
    }
    if let Some(token) = &state.opts.token {
        let required = match needed {
            Access::Open => false,
            Access::Read => state.opts.protect_reads,
            Access::Write => true,
        };
        if required && let Err(e) = check_token(&req, token) {
            return e.into_response();
        }
    }
    next.run(req).await
}

fn check_token(req: &Request, token: &str) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs `Authorization: Bearer <token>` (the token kairos serve \
             was given with KAIROS_ADMIN_TOKEN or --token)",
        ));
    };
    let given = value
        .to_str()
        .ok()
        // The scheme is case-insensitive (RFC 9110 §11.1), so `BEARER` works as well.
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the Authorization header must be `Bearer <token>`",
            )
        })?;
    // `ct_eq` on slices of different lengths returns false at once; the length of the
    // token is not the secret, its bytes are.
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the bearer token is not the one this server was given",
        ))
    }
}

/// Whether the request asks to become a WebSocket.
fn is_websocket(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Refuses a request whose `Host` is not a loopback name or address (see the module
/// doc). A request without `Host` does not come from a browser, so it passes.
fn loopback_host(req: &Request) -> Result<(), ApiError> {
    let Some(host) = req.headers().get(header::HOST) else {
        return Ok(());
    };
    let host = host.to_str().unwrap_or("");
    if is_loopback_host(host) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "this server has no token, so it answers only requests addressed to a loopback \
             name or address (localhost, 127.0.0.1, [::1]), not to `{}`: use such an address, \
             or give the server a token (KAIROS_ADMIN_TOKEN or --token) to serve other names",
            crate::error::clip(host)
        ),
    ))
}

/// Whether a `Host` header value (a name or address, perhaps with a port) names this
/// machine's loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let Ok(authority) = host.parse::<axum::http::uri::Authority>() else {
        return false;
    };
    let name = authority.host();
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return ip.to_canonical().is_loopback();
    }
    // A fully qualified name may end with a dot; `localhost` and its subdomains always
    // resolve to loopback (RFC 6761), so no rebinding page can own them.
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Refuses a mutating request or a WebSocket handshake whose `Origin` (sent by
/// browsers) names another host than the one addressed.
fn same_origin(req: &Request) -> Result<(), ApiError> {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    if origin_host.is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host)) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "cross-origin requests may not change anything or open a WebSocket (this API \
         grants no CORS)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_document_are_open_writes_are_not() {
        assert_eq!(access(&Method::GET, "/health"), Access::Open);
        assert_eq!(access(&Method::GET, "/api/v1/openapi.json"), Access::Open);
        assert_eq!(access(&Method::GET, "/api/v1/runs"), Access::Read);
        assert_eq!(access(&Method::GET, "/metrics"), Access::Read);
        assert_eq!(access(&Method::POST, "/api/v1/runs"), Access::Write);
        assert_eq!(access(&Method::DELETE, "/api/v1/runs/1"), Access::Write);
        assert_eq!(access(&Method::PATCH, "/api/v1/jobs/x"), Access::Write);
        // A write to an open path's neighbour is still a write.
        assert_eq!(access(&Method::POST, "/health"), Access::Write);
    }

    #[test]
    fn loopback_hosts_are_loopback_names_and_addresses_only() {
        for host in [
            "localhost",
            "localhost:8080",
            "LocalHost.:8080",
            "app.localhost:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
        ] {
            assert!(is_loopback_host(host), "{host} is loopback");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example:8080",
            "evillocalhost:8080",
            "10.0.0.1:8080",
            "0.0.0.0:8080",
            "[::]:8080",
            "[fe80::1]:8080",
            "127.0.0.1.nip.io:8080",
        ] {
            assert!(!is_loopback_host(host), "{host} is not loopback");
        }
    }
}
