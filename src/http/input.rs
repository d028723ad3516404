//! Reading requests: JSON bodies (malformed JSON, a wrong type or an unknown key is a
//! 400 naming the field; a body over the limit is a 413), query strings (every
//! parameter known, repeated values allowed, anything unknown refused), path ids, and
//! the values the CLI also accepts: durations such as `10m`, instants given as RFC 3339
//! or as an age such as `1h`, and `key=value` tags.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body, parsed with errors that name the offending field.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // A JSON content type is required: it also makes a cross-site form post
        // impossible without a CORS preflight, which this API never grants.
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_error(rejection.status()))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Whether the request says its body is JSON.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let mime = v.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("application/json")
        })
}

fn not_json() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "the request body must be JSON: send `Content-Type: application/json`",
    )
}

/// Refuses a body that is not JSON on a request that changes something, also where
/// the endpoint reads none (`POST .../pause`): a form or text sent there is a
/// client's mistake, and one a cross-site form could make.
pub(crate) async fn json_bodies_only(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    use axum::response::IntoResponse;
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    if changes && has_body && !is_json(headers) {
        return not_json().into_response();
    }
    next.run(req).await
}

/// The error for a body that could not be read.
pub(crate) fn body_error(status: StatusCode) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than this server accepts; split a batch into \
             smaller ones",
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request body could not be read",
        )
    }
}

/// Parses JSON into `T`; errors name the path of the bad value (`runs[2].priority`).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "the request body is empty; send a JSON object",
        ));
    }
    // Serde would read an array as a struct's fields in order (`[0]: invalid type ...`);
    // every body kairos takes is an object, so say that instead (or where the JSON
    // breaks, when it is not JSON at all).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(v) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                format!(
                    "the request body must be a JSON object ({{\"key\": value, ...}}), not {}",
                    crate::task::json_kind(&v)
                ),
            )
            .with_details(serde_json::json!({ "field": "body" })),
            Err(e) => malformed(&e),
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(malformed(&inner));
            }
            // The field's path says where the value is; serde's " at line 1 column 40"
            // would only repeat it, less readably.
            let full = inner.to_string();
            let position = format!(" at line {} column {}", inner.line(), inner.column());
            let message = serde_message(full.strip_suffix(&position).unwrap_or(&full));
            // A missing or unknown field is reported at its parent's path ("."):
            // name the field from serde's message instead.
            let field = if path == "." {
                quoted(&message).unwrap_or_else(|| "body".to_string())
            } else {
                path
            };
            Err(ApiError::field(&field, message))
        }
    }
}

/// The error for a body that is not JSON, with where it breaks.
fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed_json",
        format!(
            "the request body is not valid JSON: {}",
            serde_message(&e.to_string())
        ),
    )
    .with_details(serde_json::json!({ "line": e.line(), "column": e.column() }))
}

/// A serde message with the value it echoes from the request clipped, and nothing
/// else: in `` unknown field `x`, expected one of `task`, ... `` or `invalid type:
/// string "x", expected ...` the `x` is whatever the client sent, while the expected
/// part (for an unknown field, every valid one) is written by kairos and must reach
/// the client whole.
pub(crate) fn serde_message(message: &str) -> String {
    // The echoed value is serde's first quoted text: its prefix (`unknown field `,
    // `invalid type: string `) has no quotes. It ends at the last `, expected` (or
    // `, there are no fields`), since what follows is kairos's and quotes no such text.
    let Some(start) = message.find(['`', '"']) else {
        return message.to_string();
    };
    let ends: &[&str] = if message[start..].starts_with('`') {
        &["`, expected ", "`, there are no fields"]
    } else {
        &["\", expected "]
    };
    let end = ends
        .iter()
        .filter_map(|e| message.rfind(e))
        .filter(|&end| end > start)
        .max();
    match end {
        Some(end) => format!(
            "{}{}{}",
            &message[..=start],
            crate::error::clip(&message[start + 1..end]),
            &message[end..]
        ),
        // `missing field `task``, or a message of kairos's own (those clip what they
        // echo where they are written).
        None => message.to_string(),
    }
}

/// The first `` `name` `` in a serde message.
fn quoted(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// A query string as key/value pairs, taken one by one; whatever is left at the end is
/// an unknown parameter and refused, naming the known ones.
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        let pairs = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Query { pairs }
    }

    /// Every value of `key` (repeated keys and comma-separated values both count).
    pub(crate) fn all(&mut self, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.pairs.retain(|(k, v)| {
            if k == key {
                out.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
                false
            } else {
                true
            }
        });
        out
    }

    /// Every value of `key`, without splitting on commas (tags may hold commas).
    pub(crate) fn all_raw(&mut self, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.pairs.retain(|(k, v)| {
            if k == key {
                out.push(v.clone());
                false
            } else {
                true
            }
        });
        out
    }

    /// The value of `key`; given twice (with different values) is an error.
    pub(crate) fn one(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        let mut values = self.all_raw(key);
        values.dedup();
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.pop()),
            _ => Err(ApiError::field(key, "given more than once")),
        }
    }

    /// The value of `key` parsed with `FromStr`.
    pub(crate) fn parsed<T: std::str::FromStr>(&mut self, key: &str) -> Result<Option<T>, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        self.one(key)?
            .map(|v| {
                v.parse::<T>().map_err(|e| {
                    ApiError::field(key, format!("`{}` is invalid: {e}", crate::error::clip(&v)))
                })
            })
            .transpose()
    }

    /// Refuses any parameter not taken; `known` lists the valid ones in the message.
    pub(crate) fn finish(self, known: &[&str]) -> Result<(), ApiError> {
        let Some((key, _)) = self.pairs.first() else {
            return Ok(());
        };
        let message = if known.is_empty() {
            format!(
                "unknown query parameter `{}`; this endpoint takes none",
                crate::error::clip(key)
            )
        } else {
            format!(
                "unknown query parameter `{}`; use one of: {}",
                crate::error::clip(key),
                known.join(", ")
            )
        };
        Err(
            ApiError::new(StatusCode::BAD_REQUEST, "unknown_parameter", message)
                .with_details(serde_json::json!({ "field": key })),
        )
    }
}

/// A run id from the path.
pub(crate) fn run_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().map_err(|_| {
        ApiError::field(
            "id",
            format!(
                "`{}` is not a run id (a whole number)",
                crate::error::clip(raw)
            ),
        )
    })
}

/// A duration such as `10m`, `1h30m` or `7d`.
pub(crate) fn duration(field: &str, s: &str) -> Result<std::time::Duration, ApiError> {
    crate::schedule::parse_duration(s).map_err(|e| ApiError::field(field, e.to_string()))
}

/// An optional RFC 3339 time in a request body (`#[serde(default, deserialize_with =
/// "input::time")]`). It accepts what chrono's own `Deserialize` does, but a bad value
/// is answered with the format and an example rather than chrono's bare
/// `input contains invalid characters`.
pub(crate) fn time<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    struct Time;
    impl serde::de::Visitor<'_> for Time {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "an RFC 3339 time such as {TIME_EXAMPLE}")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            s.parse::<DateTime<chrono::FixedOffset>>()
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    E::custom(format!(
                        "`{}` is not an RFC 3339 time such as {TIME_EXAMPLE} ({e})",
                        crate::error::clip(s)
                    ))
                })
        }
    }
    struct Optional;
    impl<'de> serde::de::Visitor<'de> for Optional {
        type Value = Option<DateTime<Utc>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            Time.expecting(f)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(Time).map(Some)
        }
    }
    d.deserialize_option(Optional)
}

/// The example of an RFC 3339 time in messages.
const TIME_EXAMPLE: &str = "2026-12-01T09:00:00Z";

/// An RFC 3339 instant or an age before `now` (`1h`: an hour ago), as the CLI takes.
pub(crate) fn since(field: &str, s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    crate::model::parse_since(s, now).map_err(|e| ApiError::field(field, e))
}

/// A `key=value` tag.
pub(crate) fn tag(field: &str, s: &str) -> Result<(String, String), ApiError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(ApiError::field(
            field,
            format!(
                "`{}` is not a tag; write key=value, e.g. kb_id=42",
                crate::error::clip(s)
            ),
        )),
    }
}

/// Refuses query parameters on requests that change something (their input is the
/// JSON body), where they would otherwise be ignored: `POST /api/v1/runs?dry_run=1`
/// must not enqueue a real run. `DELETE /api/v1/jobs/{name}` reads its own
/// (`keep_history`) and refuses the others itself.
pub(crate) async fn no_query_on_changes(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    use axum::response::IntoResponse;
    let reads_its_own =
        req.method() == Method::DELETE && req.uri().path().starts_with("/api/v1/jobs/");
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes && !reads_its_own {
        let raw = req.uri().query().map(str::to_string);
        if let Err(e) = Query::parse(raw.as_deref()).finish(&[]) {
            return e.into_response();
        }
    }
    next.run(req).await
}
