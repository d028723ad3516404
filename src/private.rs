//! Not public API: the runtime half of `#[kairos::task]`.
//!
//! Owns everything the generated code calls: the re-exports it needs (so users never add
//! `serde_json`, `inventory` or `futures` themselves), reading a run's JSON params into
//! the function's arguments by name, and turning the function's return value into a
//! [`TaskOutcome`]. Keeping this logic here, not in the expansion, keeps the generated
//! code small and lets it be tested like any other code.

use std::fmt::{self, Display};
use std::future::Future;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::{Map, Value};

use crate::task::TaskError;

pub use crate::task::{FailedRun, Misfire, Overlap, ParamDef, TaskContext, TaskDef, TaskOutcome};
pub use kairos_schedule::DstPolicy;
pub use futures::future::BoxFuture;
pub use inventory;
pub use serde_json;
pub use std::boxed::Box;
pub use std::time::Duration;

/// Boxes a handler's future, fixing its output type for inference.
pub fn handler<F>(fut: F) -> BoxFuture<'static, TaskOutcome>
where
    F: Future<Output = TaskOutcome> + Send + 'static,
{
    Box::pin(fut)
}

/// A handler future that fails at once, for params that do not fit the function.
pub fn rejected(err: TaskError) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move { Err(err) })
}

/// Boxes the future of an `on_failure` function.
pub fn failure_hook<F>(fut: F) -> BoxFuture<'static, ()>
where
    F: Future<Output = ()> + Send + 'static,
{
    Box::pin(fut)
}

/// Reads a run's params into a task's arguments, one by name, collecting every problem
/// so a single `InvalidParams` error can list them all.
#[derive(Debug)]
pub struct Params {
    map: Map<String, Value>,
    names: &'static [&'static str],
    errors: Vec<String>,
    shape_ok: bool,
}

impl Params {
    /// Starts reading `params` for a function whose named parameters are `names`.
    ///
    /// `null` counts as `{}`; anything else that is not an object is an error.
    pub fn new(params: Value, names: &'static [&'static str]) -> Self {
        let mut errors = Vec::new();
        let shape_ok = matches!(params, Value::Object(_) | Value::Null);
        let map = match params {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                errors.push(if names.is_empty() {
                    format!(
                        "the task takes no parameters, so params must be null or {{}}; got {}",
                        crate::task::json_kind(&other)
                    )
                } else {
                    format!(
                        "params must be a JSON object with the keys {}; got {}",
                        names.join(", "),
                        crate::task::json_kind(&other)
                    )
                });
                Map::new()
            }
        };
        Params {
            map,
            names,
            errors,
            shape_ok,
        }
    }

    /// Takes parameter `name` and deserializes it as `T` (written `type_name` in the
    /// function's signature). A missing parameter is `None` for an `Option`, and an
    /// error otherwise. Returns `None` after recording an error.
    pub fn take<T: DeserializeOwned>(&mut self, name: &str, type_name: &str) -> Option<T> {
        if !self.shape_ok {
            // Params were not an object: "missing" would only repeat that.
            return None;
        }
        match take_param(&mut self.map, name, type_name) {
            Ok(v) => Some(v),
            Err(TaskError::InvalidParams(msg)) => {
                self.errors.push(msg);
                None
            }
            Err(other) => {
                self.errors.push(other.to_string());
                None
            }
        }
    }

    /// Ends reading: fails if any parameter was bad or if keys are left that the function
    /// does not take.
    pub fn finish(mut self) -> Result<(), TaskError> {
        if !self.map.is_empty() {
            let unknown: Vec<String> = self.map.keys().map(|k| format!("`{k}`")).collect();
            let takes = if self.names.is_empty() {
                "the task takes no parameters".to_string()
            } else {
                format!("the task takes: {}", self.names.join(", "))
            };
            let noun = if unknown.len() == 1 {
                "parameter"
            } else {
                "parameters"
            };
            self.errors
                .push(format!("unknown {noun} {}; {takes}", unknown.join(", ")));
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(TaskError::InvalidParams(self.errors.join("; ")))
        }
    }
}

/// Removes parameter `name` from `map` and deserializes it as `T`.
///
/// A missing key deserializes as serde's derive does for a missing field: `None` for an
/// `Option`, an error naming the parameter and its type (`type_name`) otherwise.
pub fn take_param<T: DeserializeOwned>(
    map: &mut Map<String, Value>,
    name: &str,
    type_name: &str,
) -> Result<T, TaskError> {
    match map.remove(name) {
        Some(v) => serde_json::from_value(v)
            .map_err(|e| TaskError::InvalidParams(format!("parameter `{name}`: {e}"))),
        None => T::deserialize(Missing).map_err(|_| {
            TaskError::InvalidParams(format!("missing parameter `{name}` ({type_name})"))
        }),
    }
}

/// Stands for an absent parameter: only `Option` (through `deserialize_option`) accepts it.
struct Missing;

#[derive(Debug)]
struct MissingError;

impl Display for MissingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("missing")
    }
}

impl std::error::Error for MissingError {}

impl de::Error for MissingError {
    fn custom<M: Display>(_msg: M) -> Self {
        MissingError
    }
}

impl<'de> Deserializer<'de> for Missing {
    type Error = MissingError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, MissingError> {
        Err(MissingError)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MissingError> {
        visitor.visit_none()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

// The return value is turned into an outcome by autoref specialization: the generated
// code calls `(&&&Kind::of(&out)).kairos_kind().outcome(out)`. Method lookup tries the
// receiver `&&&Kind<R>` first, then `&&Kind<R>`, then `&Kind<R>`, so a `Result`
// (`ResultKind`, implemented on `&&Kind<Result>`) wins over a plain `Serialize` value
// (`ValueKind` on `&Kind<T>`), which wins over anything else (`OtherKind` on `Kind<T>`),
// whose `outcome` fails to compile with a message saying what a task may return. (The
// `Kind` wrapper keeps the blanket impls from matching at the wrong level, as they would
// on bare references.) That way `anyhow::Result<T>` reports its error and a
// plain `T` is stored, without the macro having to see through type aliases.

/// Carries a return value's type for the `kairos_kind` lookup.
pub struct Kind<T>(PhantomData<T>);

impl<T> Kind<T> {
    /// The `Kind` of `value`'s type.
    pub fn of(_value: &T) -> Self {
        Kind(PhantomData)
    }
}

/// Marks a return value handled as `Result<T, E>`.
#[derive(Debug, Clone, Copy)]
pub struct ResultTag;

/// Marks a return value handled as a plain `Serialize` value.
#[derive(Debug, Clone, Copy)]
pub struct ValueTag;

/// Marks a return value a task cannot have.
#[derive(Debug, Clone, Copy)]
pub struct OtherTag;

/// Selects [`ResultTag`] for `Result<T: Serialize, E: Display>`.
pub trait ResultKind {
    /// The tag whose `outcome` converts this value.
    fn kairos_kind(&self) -> ResultTag {
        ResultTag
    }
}

impl<T: Serialize, E: Display> ResultKind for &&Kind<Result<T, E>> {}

/// Selects [`ValueTag`] for any other `Serialize` value.
pub trait ValueKind {
    /// The tag whose `outcome` converts this value.
    fn kairos_kind(&self) -> ValueTag {
        ValueTag
    }
}

impl<T: Serialize> ValueKind for &Kind<T> {}

/// Selects [`OtherTag`] for everything else.
pub trait OtherKind {
    /// The tag whose `outcome` reports the error.
    fn kairos_kind(&self) -> OtherTag {
        OtherTag
    }
}

impl<T> OtherKind for Kind<T> {}

/// Implemented by no type: the bound that explains a bad return type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by a kairos task",
    label = "a task returns `()`, a `Serialize` value, or `Result<T, E>` with `T: Serialize` and `E: Display`",
    note = "derive `serde::Serialize` for the value, or implement `Display` for the error type"
)]
pub trait TaskReturn {}

impl OtherTag {
    /// Does not compile: `T` is not a type a task may return.
    pub fn outcome<T: TaskReturn>(self, _out: T) -> TaskOutcome {
        unreachable!("no type implements TaskReturn")
    }
}

impl ResultTag {
    /// `Ok(v)` stores `v` (nothing for `()`); `Err(e)` fails with `e`'s text, including
    /// an `anyhow` context chain.
    pub fn outcome<T: Serialize, E: Display>(self, out: Result<T, E>) -> TaskOutcome {
        match out {
            Ok(v) => to_result(&v),
            Err(e) => Err(TaskError::Failed(format!("{e:#}"))),
        }
    }
}

impl ValueTag {
    /// Stores `v` (nothing for `()`).
    pub fn outcome<T: Serialize>(self, out: T) -> TaskOutcome {
        to_result(&out)
    }
}

/// Serializes a run's result; a value that serializes to JSON `null`, such as `()`,
/// stores no result.
fn to_result<T: Serialize>(v: &T) -> TaskOutcome {
    match serde_json::to_value(v) {
        Ok(Value::Null) => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(e) => Err(TaskError::Failed(format!("cannot serialize result: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read2(params: Value) -> Result<(String, Option<u32>), TaskError> {
        let mut p = Params::new(params, &["doc_id", "count"]);
        let a = p.take::<String>("doc_id", "String");
        let b = p.take::<Option<u32>>("count", "Option<u32>");
        p.finish()?;
        Ok((a.unwrap(), b.unwrap()))
    }

    fn invalid(msg: &str) -> TaskError {
        TaskError::InvalidParams(msg.to_string())
    }

    #[test]
    fn reads_params_by_name() {
        assert_eq!(
            read2(json!({"doc_id": "d1", "count": 3})),
            Ok(("d1".to_string(), Some(3)))
        );
        assert_eq!(read2(json!({"doc_id": "d1"})), Ok(("d1".to_string(), None)));
    }

    #[test]
    fn reports_every_problem() {
        assert_eq!(
            read2(json!({"dco_id": "d1", "count": "x"})),
            Err(invalid(
                "missing parameter `doc_id` (String); parameter `count`: invalid type: \
                 string \"x\", expected u32; unknown parameter `dco_id`; the task takes: \
                 doc_id, count"
            ))
        );
        assert_eq!(
            read2(json!([1])),
            Err(invalid(
                "params must be a JSON object with the keys doc_id, count; got an array"
            ))
        );
    }

    #[test]
    fn no_params() {
        for ok in [Value::Null, json!({})] {
            assert_eq!(Params::new(ok, &[]).finish(), Ok(()));
        }
        assert_eq!(
            Params::new(json!({"a": 1, "b": 2}), &[]).finish(),
            Err(invalid(
                "unknown parameters `a`, `b`; the task takes no parameters"
            ))
        );
        assert_eq!(
            Params::new(json!("x"), &[]).finish(),
            Err(invalid(
                "the task takes no parameters, so params must be null or {}; got a string"
            ))
        );
    }

    #[test]
    // The `&`s look needless but are how the generated code picks the impl.
    #[allow(clippy::needless_borrow)]
    fn outcomes() {
        use super::{ResultKind as _, ValueKind as _};
        let unit = ();
        assert_eq!((&&&Kind::of(&unit)).kairos_kind().outcome(unit), Ok(None));
        let n = 5;
        assert_eq!(
            (&&&Kind::of(&n)).kairos_kind().outcome(n),
            Ok(Some(json!(5)))
        );
        let ok: Result<(), String> = Ok(());
        assert_eq!((&&&Kind::of(&ok)).kairos_kind().outcome(ok), Ok(None));
        let ok: Result<Vec<u8>, String> = Ok(vec![1]);
        assert_eq!(
            (&&&Kind::of(&ok)).kairos_kind().outcome(ok),
            Ok(Some(json!([1])))
        );
        // A `Result` that is also `Serialize` is still handled as a `Result`.
        let err: Result<u8, String> = Err("no".into());
        assert_eq!(
            (&&&Kind::of(&err)).kairos_kind().outcome(err),
            Err(TaskError::Failed("no".into()))
        );
        let err: anyhow::Result<u8> = Err(anyhow::anyhow!("inner").context("outer"));
        assert_eq!(
            (&&&Kind::of(&err)).kairos_kind().outcome(err),
            Err(TaskError::Failed("outer: inner".into()))
        );
        let bad: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(matches!(
            (&&&Kind::of(&bad)).kairos_kind().outcome(bad),
            Err(TaskError::Failed(m)) if m.starts_with("cannot serialize result: ")
        ));
    }
}
