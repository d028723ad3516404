//! The API's one error shape, `{"error": {"code", "message", "details"}}`, and the one
//! place where a [`kairos::Error`](crate::Error) code becomes an HTTP status.
//!
//! Every failure leaves through [`ApiError`]: the front door's errors, bad request
//! bodies and query strings, authentication, and the responses axum itself would give
//! as plain text (an unknown route, a wrong method, a body over the limit), which
//! [`json_errors`] rewrites into the same shape.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::Error;

/// An error answered as JSON with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) details: Value,
}

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorObject,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorObject {
    /// A stable machine-readable code: `invalid_input`, `invalid_params`,
    /// `unknown_task`, `invalid_batch`, `malformed_json`, `unknown_parameter`,
    /// `not_found`, `no_route`, `method_not_allowed`, `conflict`,
    /// `idempotency_conflict`, `payload_too_large`, `unsupported_media_type`,
    /// `unauthorized`, `forbidden`, `database_unavailable`, `database`, `internal`.
    code: String,
    /// One line for people.
    message: String,
    /// Structured details: `field` for invalid input, `problems` for invalid params,
    /// `errors` (one per invalid item, with its `index`) for a batch.
    #[schema(value_type = Object)]
    details: Value,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    /// A 400 about one field of the request (a body key or a query parameter).
    pub(crate) fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_input",
            // The field may be a key the client made up (an unknown one, a tag's).
            message: format!("{}: {message}", crate::error::clip(field)),
            details: json!({ "field": field }),
        }
    }

    pub(crate) fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorObject {
                code: self.code.to_string(),
                message: self.message.clone(),
                details: self.details.clone(),
            },
        }
    }
}

/// The HTTP status of each front-door error code.
fn status_of(e: &Error) -> StatusCode {
    match e.code() {
        "unknown_task" | "invalid_params" | "invalid_input" | "invalid_batch" => {
            StatusCode::BAD_REQUEST
        }
        "not_found" => StatusCode::NOT_FOUND,
        "conflict" | "idempotency_conflict" => StatusCode::CONFLICT,
        "database_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Structured details of a front-door error: what a program needs to point at the
/// offending input.
fn details_of(e: &Error) -> Value {
    match e {
        Error::UnknownTask { name, .. } => json!({ "field": "task", "task": name }),
        Error::InvalidParams { task, problems } => {
            json!({ "field": "params", "task": task, "problems": problems })
        }
        Error::Invalid { field, .. } => json!({ "field": field }),
        Error::JobNotFound { name, .. } => json!({ "resource": "job", "name": name }),
        Error::RunNotFound { id } => json!({ "resource": "run", "id": id }),
        Error::QueueNotFound { name, .. } => json!({ "resource": "queue", "name": name }),
        Error::NodeNotFound { name, .. } => json!({ "resource": "node", "id": name }),
        Error::IdempotencyConflict { run_id, .. } => {
            json!({ "field": "idempotency_key", "run_id": run_id })
        }
        Error::Batch { total, errors } => json!({
            "total": total,
            "errors": errors.iter().map(|(i, e)| item_error(*i, e)).collect::<Vec<_>>(),
        }),
        _ => json!({}),
    }
}

/// One invalid item of a batch: its index (from 0), code, message and details.
pub(crate) fn item_error(index: usize, e: &Error) -> Value {
    let mut v = json!({ "index": index, "code": e.code(), "message": e.to_string() });
    if let (Value::Object(m), Value::Object(d)) = (&mut v, details_of(e)) {
        m.extend(d);
    }
    v
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError {
            status: status_of(&e),
            code: e.code(),
            message: e.to_string(),
            details: details_of(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kairos\""),
            );
        }
        if self.code == "database_unavailable" {
            // Each request tries the database afresh, so a client may come back soon;
            // a few seconds keeps a crowd of retrying clients from adding to an outage.
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
}

/// The answer for a path no route serves.
pub(crate) async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!(
            "no endpoint at {}; GET /api/v1/openapi.json lists them",
            crate::error::clip(uri.path())
        ),
    )
}

/// The answer for a known path with a method it does not serve.
pub(crate) async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not served at this path; GET /api/v1/openapi.json lists the methods"),
    )
}

/// Rewrites an error response that is not JSON (axum's own rejections are plain text
/// or empty) into the error shape, so no client ever has to parse two formats.
pub(crate) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::NOT_FOUND => "no_route",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    } else {
        text
    };
    let mut r = ApiError::new(status, code, message).into_response();
    // Keep headers such as `Allow` and `WWW-Authenticate`, not the old body's.
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            r.headers_mut().insert(k.clone(), v.clone());
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn a_database_that_cannot_be_reached_is_503_with_retry_after() {
        let lost = sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout);
        let r = ApiError::from(Error::Store(StoreError::Db(lost))).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");

        let failed = sea_orm::DbErr::Custom("no such column".into());
        let r = ApiError::from(Error::Store(StoreError::Db(failed))).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
    }
}
