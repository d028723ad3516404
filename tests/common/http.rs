//! The plumbing of the `tests/http_*.rs` tests: the API served on 127.0.0.1 (an
//! ephemeral port) in the test process, and a client that returns each answer's
//! status with its JSON body.

#![allow(dead_code, unreachable_pub)]

use kairos::Admin;
use kairos::http::{CancellationToken, HttpOptions, router};
use reqwest::Method;
use serde_json::Value;

/// The API served over real HTTP on a loopback port; stops when dropped.
pub struct Api {
    pub base: String,
    pub token: Option<String>,
    client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What one request got.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    /// The body as JSON (fails the test when it is not).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self:#?}");
        self.json()
    }

    /// Asserts an error answer: the status, the JSON error shape and its code; returns
    /// the error object.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> Value {
        let v = self.expect(status);
        assert!(
            self.content_type.starts_with("application/json"),
            "{self:#?}"
        );
        let e = &v["error"];
        assert_eq!(e["code"], code, "{self:#?}");
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{self:#?}"
        );
        assert!(e["details"].is_object(), "{self:#?}");
        e.clone()
    }
}

impl Api {
    /// Serves `router(admin, opts)` on 127.0.0.1 with an ephemeral port.
    pub async fn start(admin: Admin, opts: HttpOptions) -> Api {
        Api::serve(admin, opts, None).await
    }

    /// Like [`Api::start`], with a graceful shutdown that begins when `stop` is
    /// cancelled, as an application embedding the router would write it.
    pub async fn start_until(admin: Admin, opts: HttpOptions, stop: CancellationToken) -> Api {
        Api::serve(admin, opts, Some(stop)).await
    }

    /// Whether the server has shut down.
    pub fn has_stopped(&self) -> bool {
        self.server.is_finished()
    }

    async fn serve(admin: Admin, opts: HttpOptions, stop: Option<CancellationToken>) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().unwrap();
        let app = router(admin, opts);
        let server = tokio::spawn(async move {
            let _ = match stop {
                Some(stop) => {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await
                }
                None => axum::serve(listener, app).await,
            };
        });
        Api {
            base: format!("http://{addr}"),
            token: None,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(std::time::Duration::from_secs(20))
                .build()
                .unwrap(),
            server,
        }
    }

    /// Sends requests with `Authorization: Bearer <token>` from now on.
    pub fn with_token(mut self, token: &str) -> Api {
        self.token = Some(token.to_string());
        self
    }

    /// Any request: a raw body with a content type, and a token (or none).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
        token: Option<&str>,
    ) -> Answer {
        self.send_with(method, path, body, token, &[]).await
    }

    /// A request with headers of the test's choosing too (`Host` and `Origin`, as a
    /// browser would send them for another site's page); still sent to 127.0.0.1.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some((bytes, content_type)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = req.send().await.expect("the request is answered");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        Answer {
            status,
            content_type,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, self.token.as_deref())
            .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None, self.token.as_deref())
            .await
    }

    /// POST without a body.
    pub async fn post_empty(&self, path: &str) -> Answer {
        self.send(Method::POST, path, None, self.token.as_deref())
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(
            Method::POST,
            path,
            Some((body.to_string().into_bytes(), "application/json")),
            self.token.as_deref(),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Answer {
        self.send(
            Method::PATCH,
            path,
            Some((body.to_string().into_bytes(), "application/json")),
            self.token.as_deref(),
        )
        .await
    }

    /// POST of raw bytes as JSON.
    pub async fn post_raw(&self, path: &str, body: &str) -> Answer {
        self.send(
            Method::POST,
            path,
            Some((body.as_bytes().to_vec(), "application/json")),
            self.token.as_deref(),
        )
        .await
    }
}
