//! Checks a run's params against a task's published JSON Schema
//! ([`TaskDef::params_schema`](crate::TaskDef::params_schema)), for where only the schema
//! is available: the standalone admin CLI, which has no compiled tasks. In a process that
//! has the task, `TaskDef::check_params` gives the exact verdict instead.
//!
//! Owns [`check`] and exactly the subset of JSON Schema that kairos publishes (see
//! `ParamSchema` in `__private`): `type` (one name or a list), `properties`, `required`,
//! `additionalProperties` (`false` or a schema), `items`, `anyOf`, `minimum`, `maximum`,
//! `minLength`, `maxLength` and `format: "date-time"`; `true` and `false` as schemas. Other
//! keywords, such as the `x-rust-type` annotation (used in "missing" messages), are
//! ignored. Two readings follow serde rather than the letter of JSON Schema, so that the
//! checker and the task accept the same values: `integer` means a number written without
//! a fraction or exponent (serde reads `1.0` as a float, which no integer type accepts),
//! and `date-time` is what chrono's serde reads (RFC 3339, also with a space for `T`).
//!
//! Messages name the parameter (with a path such as `tags[2]` or `limits.eu` inside it)
//! and what was expected: ``parameter `region`: expected a string, got the number 5``.

use std::cmp::Ordering;
use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Number, Value};

/// Checks `params` against `schema`, a task's params schema; `null` params count as `{}`.
/// Returns every problem found, each as one message.
pub(crate) fn check(schema: &Value, params: &Value) -> Result<(), Vec<String>> {
    let empty = Value::Object(Map::new());
    let params = if params.is_null() { &empty } else { params };
    let mut errors = Vec::new();
    if !params.is_object() && types(schema).is_some_and(|t| t.contains(&"object")) {
        errors.push(not_an_object(schema, params));
    } else {
        value(schema, params, &mut Vec::new(), &mut errors);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A step from the params down to a value: a key, or an index in an array.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

type Path<'a> = Vec<Step<'a>>;

/// `doc_id`, `tags[2]`, `limits.eu`, `limits["a b"]`.
fn path_text(path: &[Step<'_>]) -> String {
    let mut s = String::new();
    for (i, step) in path.iter().enumerate() {
        match step {
            Step::Key(k) if i == 0 => s.push_str(k),
            Step::Key(k) if is_plain(k) => {
                s.push('.');
                s.push_str(k);
            }
            Step::Key(k) => {
                let _ = write!(s, "[{}]", Value::from(*k));
            }
            Step::Index(n) => {
                let _ = write!(s, "[{n}]");
            }
        }
    }
    s
}

fn is_plain(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// The start of a message about the value at `path`.
fn at(path: &[Step<'_>]) -> String {
    if path.is_empty() {
        "params: ".to_string()
    } else {
        format!("parameter `{}`: ", path_text(path))
    }
}

/// The schema's `type` as a list of names, if it has one.
fn types(schema: &Value) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn has_type(v: &Value, ty: &str) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        // Not a type this checker knows: do not refuse values over it.
        _ => true,
    }
}

fn type_text(ty: &str) -> String {
    match ty {
        "object" => "an object".into(),
        "array" => "an array".into(),
        "string" => "a string".into(),
        "integer" => "an integer".into(),
        "number" => "a number".into(),
        "boolean" => "a boolean".into(),
        "null" => "null".into(),
        other => format!("a value of type `{other}`"),
    }
}

/// "a string or null".
fn or_list(items: Vec<String>) -> String {
    let mut unique: Vec<String> = Vec::new();
    for i in items {
        if !unique.contains(&i) {
            unique.push(i);
        }
    }
    match unique.split_last() {
        None => "nothing".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// What a schema expects, as far as types go: "a string", "an integer or null".
fn expected_text(schema: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(ts) = types(schema) {
        parts.extend(ts.into_iter().map(type_text));
    } else if let Some(Value::Array(branches)) = schema.get("anyOf") {
        parts.extend(branches.iter().map(expected_text));
    } else {
        parts.push("any value".into());
    }
    or_list(parts)
}

/// A value for a message: "the number 5", "the string \"x\"", "an array".
fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            let head: String = s.chars().take(40).collect();
            format!("the string {}...", Value::from(head))
        }
        Value::String(_) => format!("the string {v}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Whether `v` has a type `schema` allows, looking into `anyOf`; the part of a check
/// that tells which branch of an `anyOf` a value was meant for.
fn type_matches(schema: &Value, v: &Value) -> bool {
    if let Some(ts) = types(schema)
        && !ts.iter().any(|t| has_type(v, t))
    {
        return false;
    }
    match schema.get("anyOf") {
        Some(Value::Array(branches)) => branches.iter().any(|b| type_matches(b, v)),
        _ => true,
    }
}

/// Checks `v`, found at `path`, against `schema`, adding a message per problem.
fn value<'a>(schema: &'a Value, v: &'a Value, path: &mut Path<'a>, errors: &mut Vec<String>) {
    let s = match schema {
        Value::Object(s) => s,
        Value::Bool(false) => {
            errors.push(format!("{}no value is allowed here", at(path)));
            return;
        }
        // `true`, and anything that is not a schema, accepts every value.
        _ => return,
    };

    if let Some(ts) = types(schema)
        && !ts.iter().any(|t| has_type(v, t))
    {
        errors.push(format!(
            "{}expected {}, got {}",
            at(path),
            or_list(ts.into_iter().map(type_text).collect()),
            value_text(v)
        ));
        return;
    }

    if let Some(Value::Array(branches)) = s.get("anyOf") {
        any_of(branches, v, path, errors);
    }

    match v {
        Value::Number(n) => range(s, n, path, errors),
        Value::String(text) => string(s, text, path, errors),
        Value::Array(items) => {
            if let Some(item) = s.get("items") {
                for (i, x) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    value(item, x, path, errors);
                    path.pop();
                }
            }
        }
        Value::Object(map) => object(s, map, path, errors),
        Value::Null | Value::Bool(_) => {}
    }
}

/// `anyOf`: fine when a branch accepts `v`. Otherwise the problems of the first branch
/// of `v`'s type (an out-of-range `Option<u8>` is about the range, not about null), or,
/// when no branch has its type, one message listing every type allowed.
fn any_of<'a>(branches: &'a [Value], v: &'a Value, path: &mut Path<'a>, errors: &mut Vec<String>) {
    let mut first_of_type = None;
    for b in branches {
        let mut errs = Vec::new();
        value(b, v, path, &mut errs);
        if errs.is_empty() {
            return;
        }
        if first_of_type.is_none() && type_matches(b, v) {
            first_of_type = Some(errs);
        }
    }
    match first_of_type {
        Some(errs) => errors.extend(errs),
        None => errors.push(format!(
            "{}expected {}, got {}",
            at(path),
            or_list(branches.iter().map(expected_text).collect()),
            value_text(v)
        )),
    }
}

/// Orders two JSON numbers exactly when both are integers.
fn compare(a: &Number, b: &Number) -> Option<Ordering> {
    let int = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn range(s: &Map<String, Value>, n: &Number, path: &[Step<'_>], errors: &mut Vec<String>) {
    let min = s.get("minimum").and_then(Value::as_number);
    let max = s.get("maximum").and_then(Value::as_number);
    let below = min.is_some_and(|m| compare(n, m) == Some(Ordering::Less));
    let above = max.is_some_and(|m| compare(n, m) == Some(Ordering::Greater));
    if !below && !above {
        return;
    }
    let kind = if s.get("type").and_then(Value::as_str) == Some("integer") {
        "an integer"
    } else {
        "a number"
    };
    let bounds = match (min, max) {
        (Some(a), Some(b)) => format!("from {a} to {b}"),
        (Some(a), None) => format!("of at least {a}"),
        (None, Some(b)) => format!("of at most {b}"),
        (None, None) => unreachable!("a bound was crossed"),
    };
    errors.push(format!("{}expected {kind} {bounds}, got {n}", at(path)));
}

fn string(s: &Map<String, Value>, text: &str, path: &[Step<'_>], errors: &mut Vec<String>) {
    let len = text.chars().count() as u64;
    let min = s.get("minLength").and_then(Value::as_u64);
    let max = s.get("maxLength").and_then(Value::as_u64);
    if min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m) {
        let chars = |n: u64| {
            if n == 1 {
                "1 character".to_string()
            } else {
                format!("{n} characters")
            }
        };
        let expected = match (min, max) {
            (Some(a), Some(b)) if a == b => format!("exactly {}", chars(a)),
            (Some(a), Some(b)) => format!("from {a} to {}", chars(b)),
            (Some(a), None) => format!("at least {}", chars(a)),
            (None, Some(b)) => format!("at most {}", chars(b)),
            (None, None) => unreachable!("a bound was crossed"),
        };
        errors.push(format!(
            "{}expected a string of {expected}, got {}",
            at(path),
            value_text(&Value::from(text))
        ));
    }
    // Exactly what chrono's `Deserialize` for `DateTime` parses.
    if s.get("format").and_then(Value::as_str) == Some("date-time")
        && text.parse::<DateTime<FixedOffset>>().is_err()
    {
        errors.push(format!(
            "{}expected a date-time (RFC 3339, such as 2024-05-01T12:00:00Z), got {}",
            at(path),
            value_text(&Value::from(text))
        ));
    }
}

fn object<'a>(
    s: &'a Map<String, Value>,
    map: &'a Map<String, Value>,
    path: &mut Path<'a>,
    errors: &mut Vec<String>,
) {
    let properties = s.get("properties").and_then(Value::as_object);
    let is_property = |key: &str| properties.is_some_and(|p| p.contains_key(key));
    let required: Vec<&str> = match s.get("required") {
        Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };

    // In the order of the properties, like the run's reading in parameter order.
    for (name, prop) in properties.into_iter().flatten() {
        match map.get(name) {
            Some(v) => {
                path.push(Step::Key(name));
                value(prop, v, path, errors);
                path.pop();
            }
            None if required.contains(&name.as_str()) => errors.push(missing(name, prop, path)),
            None => {}
        }
    }
    // Required keys without a property schema.
    for name in &required {
        if !is_property(name) && !map.contains_key(*name) {
            errors.push(missing(name, &Value::Null, path));
        }
    }

    let additional = s.get("additionalProperties");
    for (key, v) in map {
        if is_property(key) {
            continue;
        }
        match additional {
            Some(Value::Bool(false)) => errors.push(unknown(key, properties, path)),
            Some(schema) => {
                path.push(Step::Key(key));
                value(schema, v, path, errors);
                path.pop();
            }
            None => {}
        }
    }
}

/// ``missing parameter `doc_id` (String)``, with the type from `x-rust-type`.
fn missing(name: &str, prop: &Value, path: &[Step<'_>]) -> String {
    let ty = match prop.get("x-rust-type").and_then(Value::as_str) {
        Some(t) => format!(" ({t})"),
        None => String::new(),
    };
    if path.is_empty() {
        format!("missing parameter `{name}`{ty}")
    } else {
        format!("{}missing field `{name}`{ty}", at(path))
    }
}

/// ``unknown parameter `regoin` (did you mean `region`?); the task takes: region``.
fn unknown(key: &str, properties: Option<&Map<String, Value>>, path: &[Step<'_>]) -> String {
    let names: Vec<&str> = properties
        .into_iter()
        .flat_map(|p| p.keys().map(String::as_str))
        .collect();
    let hint = match crate::suggest::closest(key, names.iter().copied()) {
        Some(c) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    };
    if path.is_empty() {
        let takes = if names.is_empty() {
            "the task takes no parameters".to_string()
        } else {
            format!("the task takes: {}", names.join(", "))
        };
        format!("unknown parameter `{key}`{hint}; {takes}")
    } else {
        let expected = if names.is_empty() {
            "it has no fields".to_string()
        } else {
            format!("its fields are: {}", names.join(", "))
        };
        format!("{}unknown field `{key}`{hint}; {expected}", at(path))
    }
}

/// The message for params that are not an object, worded like the run's.
fn not_an_object(schema: &Value, params: &Value) -> String {
    let names: Vec<&str> = match schema.get("properties") {
        Some(Value::Object(p)) => p.keys().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    let got = crate::task::json_kind(params);
    if !names.is_empty() {
        format!(
            "params must be a JSON object with the keys {}; got {got}",
            names.join(", ")
        )
    } else if closed {
        format!("the task takes no parameters, so params must be null or {{}}; got {got}")
    } else {
        format!("params must be a JSON object; got {got}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::__private::{ParamDef, ParamType, Params, SchemaOf};
    use crate::task::{TaskContext, TaskDef, TaskOutcome};

    fn h(_: TaskContext, _: Value) -> futures::future::BoxFuture<'static, TaskOutcome> {
        Box::pin(async { Ok(None) })
    }

    fn schema(params: &'static [ParamDef]) -> Value {
        TaskDef {
            params: Some(params),
            ..TaskDef::new("t", h, "here")
        }
        .params_schema()
    }

    /// What the macro publishes for a parameter `$name: $t`.
    macro_rules! param_def {
        ($name:literal: $t:ty) => {{
            #[allow(unused_imports)]
            use crate::__private::{AnySchema as _, KnownSchema as _, Required as _};
            fn schema() -> Value {
                (&&SchemaOf::<$t>::new()).kairos_schema()
            }
            ParamDef {
                name: $name,
                rust_type: stringify!($t),
                required: ParamType::<$t>::REQUIRED,
                schema,
            }
        }};
    }

    /// A task `fn(region: String, doc_id: String, count: Option<u32>, tags: Vec<String>,
    /// at: DateTime<Utc>, limits: HashMap<String, u8>)`.
    fn sample() -> Value {
        static PARAMS: [ParamDef; 6] = [
            param_def!("region": String),
            param_def!("doc_id": String),
            param_def!("count": Option<u32>),
            param_def!("tags": Vec<String>),
            param_def!("at": Option<chrono::DateTime<Utc>>),
            param_def!("limits": HashMap<String, u8>),
        ];
        schema(&PARAMS)
    }

    fn errs(schema: &Value, params: Value) -> Vec<String> {
        check(schema, &params).unwrap_err()
    }

    #[test]
    fn accepts_good_params() {
        let s = sample();
        let full = json!({
            "region": "eu", "doc_id": "d1", "count": 3, "tags": ["a"],
            "at": "2024-05-01T12:00:00+02:00", "limits": {"eu": 5},
        });
        assert_eq!(check(&s, &full), Ok(()));
        let least = json!({"region": "eu", "doc_id": "d1", "tags": [], "limits": {}});
        assert_eq!(check(&s, &least), Ok(()));
        let nulls = json!({"region": "eu", "doc_id": "d1", "count": null, "at": null,
                           "tags": [], "limits": {}});
        assert_eq!(check(&s, &nulls), Ok(()));
    }

    #[test]
    fn names_the_parameter_and_the_expected_type() {
        let s = sample();
        let base = || json!({"region": "eu", "doc_id": "d1", "tags": [], "limits": {}});
        let with = |k: &str, v: Value| {
            let mut p = base();
            p[k] = v;
            errs(&s, p)
        };
        assert_eq!(
            with("region", json!(5)),
            ["parameter `region`: expected a string, got the number 5"]
        );
        assert_eq!(
            with("count", json!("x")),
            ["parameter `count`: expected an integer or null, got the string \"x\""]
        );
        assert_eq!(
            with("count", json!(-1)),
            ["parameter `count`: expected an integer from 0 to 4294967295, got -1"]
        );
        assert_eq!(
            with("count", json!(1.5)),
            ["parameter `count`: expected an integer or null, got the number 1.5"]
        );
        assert_eq!(
            with("tags", json!(["a", 2, true])),
            [
                "parameter `tags[1]`: expected a string, got the number 2",
                "parameter `tags[2]`: expected a string, got the boolean true"
            ]
        );
        assert_eq!(
            with("limits", json!({"eu": 300, "us west": "x"})),
            [
                "parameter `limits.eu`: expected an integer from 0 to 255, got 300",
                "parameter `limits[\"us west\"]`: expected an integer, got the string \"x\""
            ]
        );
        assert_eq!(
            with("at", json!("tomorrow")),
            [
                "parameter `at`: expected a date-time (RFC 3339, such as 2024-05-01T12:00:00Z), \
                 got the string \"tomorrow\""
            ]
        );
    }

    #[test]
    fn missing_and_unknown_parameters() {
        let s = sample();
        assert_eq!(
            errs(&s, json!({"regoin": "eu", "tags": [], "limits": {}})),
            [
                "missing parameter `doc_id` (String)",
                "missing parameter `region` (String)",
                "unknown parameter `regoin` (did you mean `region`?); \
                 the task takes: at, count, doc_id, limits, region, tags"
            ]
        );
        assert_eq!(
            errs(&schema(&[]), json!({"x": 1})),
            ["unknown parameter `x`; the task takes no parameters"]
        );
    }

    #[test]
    fn params_must_be_an_object() {
        assert_eq!(check(&schema(&[]), &Value::Null), Ok(()));
        assert_eq!(check(&schema(&[]), &json!({})), Ok(()));
        assert_eq!(
            errs(&schema(&[]), json!("x")),
            ["the task takes no parameters, so params must be null or {}; got a string"]
        );
        assert_eq!(
            errs(&sample(), json!([1])),
            [
                "params must be a JSON object with the keys at, count, doc_id, limits, region, \
                 tags; got an array"
            ]
        );
        assert_eq!(
            errs(&sample(), Value::Null),
            [
                "missing parameter `doc_id` (String)",
                "missing parameter `limits` (HashMap<String, u8>)",
                "missing parameter `region` (String)",
                "missing parameter `tags` (Vec<String>)"
            ]
        );
        // A task registered by hand takes any object.
        let any = TaskDef::new("t", h, "here").params_schema();
        assert_eq!(check(&any, &json!({"a": [1]})), Ok(()));
        assert_eq!(
            errs(&any, json!(3)),
            ["params must be a JSON object; got a number"]
        );
    }

    #[test]
    fn other_keywords() {
        let s = json!({"type": ["string", "null"], "minLength": 2});
        let run = |v: Value| {
            let mut e = Vec::new();
            value(&s, &v, &mut vec![Step::Key("p")], &mut e);
            e
        };
        assert!(run(json!(null)).is_empty());
        assert_eq!(
            run(json!("a")),
            ["parameter `p`: expected a string of at least 2 characters, got the string \"a\""]
        );
        assert_eq!(
            run(json!(1)),
            ["parameter `p`: expected a string or null, got the number 1"]
        );
        let nested = json!({"type": "object", "properties": {"a": {"type": "integer",
            "x-rust-type": "u32"}}, "required": ["a"], "additionalProperties": false});
        let mut e = Vec::new();
        value(
            &nested,
            &json!({"other": 1}),
            &mut vec![Step::Key("p")],
            &mut e,
        );
        assert_eq!(
            e,
            [
                "parameter `p`: missing field `a` (u32)",
                "parameter `p`: unknown field `other`; its fields are: a"
            ]
        );
        let mut e = Vec::new();
        value(&json!(false), &json!(1), &mut vec![Step::Key("p")], &mut e);
        assert_eq!(e, ["parameter `p`: no value is allowed here"]);
    }

    /// The run's verdict on `{"p": v}` (or `{}` when `v` is `None`) for a parameter `T`.
    fn serde_ok<T: serde::de::DeserializeOwned>(v: &Option<Value>) -> bool {
        let mut params = Map::new();
        if let Some(v) = v {
            params.insert("p".into(), v.clone());
        }
        let mut p = Params::new(Value::Object(params), &["p"]);
        let _ = p.take::<T>("p", "T");
        p.finish().is_ok()
    }

    macro_rules! agree {
        ($values:expr; $($t:ty),* $(,)?) => {$({
            static PARAMS: [ParamDef; 1] = [param_def!("p": $t)];
            let s = schema(&PARAMS);
            for v in $values.iter() {
                let mut params = Map::new();
                if let Some(v) = v {
                    params.insert("p".to_string(), Value::clone(v));
                }
                let by_schema = check(&s, &Value::Object(params));
                assert_eq!(
                    by_schema.is_ok(),
                    serde_ok::<$t>(v),
                    "{} with {:?}: the schema says {:?}",
                    stringify!($t),
                    v,
                    by_schema
                );
            }
        })*};
    }

    /// The schema checker and the run (serde) accept and reject the same values, for
    /// every type the schemas are exact for.
    #[test]
    fn agrees_with_serde() {
        let values: Vec<Option<Value>> = [
            json!(null),
            json!(true),
            json!(0),
            json!(1),
            json!(-1),
            json!(127),
            json!(128),
            json!(255),
            json!(256),
            json!(-129),
            json!(65536),
            json!(4294967295u64),
            json!(4294967296u64),
            json!(-2147483649i64),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1.5),
            json!(1.0),
            json!(-0.0),
            json!(1e300),
            json!(""),
            json!("x"),
            json!("ab"),
            json!("é"),
            json!("2024-05-01T12:00:00Z"),
            json!("2024-05-01 12:00:00+02:00"),
            json!("2024-05-01T12:00:00.123456789-07:30"),
            json!("2024-05-01"),
            json!("2024-13-01T12:00:00Z"),
            json!([]),
            json!([1, 2]),
            json!([1, null]),
            json!(["a", "a"]),
            json!([300]),
            json!({}),
            json!({"a": 1}),
            json!({"a": "b"}),
            json!({"a": null}),
            json!({"1": true}),
        ]
        .into_iter()
        .map(Some)
        .chain([None])
        .collect();

        agree!(values; bool, u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, u128, i128);
        agree!(values; f32, f64, String, char, Box<str>, Box<String>);
        agree!(values; Option<u8>, Option<String>, Option<Option<bool>>, Option<Vec<i8>>);
        agree!(values; Vec<u8>, Vec<Option<u8>>, VecDeque<i32>, HashSet<String>, BTreeSet<u8>);
        agree!(values; HashMap<String, u32>, BTreeMap<String, bool>,
               HashMap<String, Option<String>>);
        agree!(values; Value, Map<String, Value>, Option<Value>);
        agree!(values; chrono::DateTime<Utc>, Option<chrono::DateTime<Utc>>);
    }
}
