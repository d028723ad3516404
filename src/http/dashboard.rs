//! The web dashboard: one page at `/` and its script and style sheet under
//! `/dashboard/`, all embedded in the binary, so `kairos serve` needs no files beside it
//! and the page works on a machine without internet access (nothing is loaded from
//! elsewhere).
//!
//! # What the page may do
//! The page is a read-only endpoint holding no data: everything it shows comes from
//! the JSON API through the same token checks as any other client. So these routes sit
//! outside the token guard (a browser cannot attach a bearer token to a navigation):
//! with a token configured, the page asks for it, keeps it in the tab's
//! `sessionStorage` and sends it as `Authorization: Bearer` itself. The page learns
//! only *whether* a token is needed, never the token.
//!
//! Every response carries a Content-Security-Policy that allows scripts, styles and
//! connections from this origin only and no inline script, so data that a task wrote
//! (a log line, an error) cannot run as script even if it reached the DOM as markup;
//! the script inserts data with `textContent` only.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

const INDEX_HTML: &str = include_str!("../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../../assets/dashboard/app.css");
const ICON_SVG: &str = include_str!("../../assets/dashboard/icon.svg");

/// The placeholder in `index.html` replaced by what the API asks of the page.
const AUTH_PLACEHOLDER: &str = "__KAIROS_AUTH__";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// The dashboard's routes, to merge beside the API (outside its token guard: see the
/// module doc).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route(
            "/dashboard/app.css",
            get(|| async { asset("text/css", APP_CSS) }),
        )
        .route(
            "/dashboard/icon.svg",
            get(|| async { asset("image/svg+xml", ICON_SVG) }),
        )
}

/// What the page must ask of its user: `none`, `token` (for changes) or `token-reads`
/// (for every request).
fn auth_mode(st: &AppState) -> &'static str {
    match (st.opts.has_token(), st.opts.protect_reads) {
        (false, _) => "none",
        (true, false) => "token",
        (true, true) => "token-reads",
    }
}

async fn index(State(st): State<AppState>) -> Response {
    let html = INDEX_HTML.replace(AUTH_PLACEHOLDER, auth_mode(&st));
    with_headers("text/html", html, "no-cache")
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    // Assets change only with the binary; `no-cache` makes the browser revalidate
    // (cheap on a loopback address) so an upgraded server never runs a stale script.
    with_headers(content_type, body.to_string(), "no-cache")
}

/// The response with its type and the headers every dashboard response carries.
fn with_headers(content_type: &'static str, body: String, cache: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    let ct = format!("{content_type}; charset=utf-8");
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&ct).expect("a valid content type"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_the_auth_placeholder_and_no_inline_script() {
        assert!(INDEX_HTML.contains(AUTH_PLACEHOLDER));
        // The CSP forbids inline script: every <script> must load a file.
        for (i, _) in INDEX_HTML.match_indices("<script") {
            let tag = &INDEX_HTML[i..INDEX_HTML[i..].find('>').unwrap() + i];
            assert!(tag.contains("src="), "inline script: {tag}");
        }
    }

    #[test]
    fn the_script_never_assigns_markup() {
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(forbidden), "app.js uses {forbidden}");
        }
    }
}
