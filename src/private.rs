//! Not public API: the runtime half of `#[kairos::task]`.
//!
//! Owns everything the generated code calls: the re-exports it needs (so users never add
//! `serde_json`, `inventory` or `futures` themselves), reading a run's JSON params into
//! the function's arguments by name (for a run, and for the check at the door that gives
//! the same verdict without running), the JSON Schema and the `required` flag published
//! for each parameter, and turning the function's return value into a [`TaskOutcome`].
//! Keeping this logic here, not in the expansion, keeps the generated code small and
//! lets it be tested like any other code.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::{self, Display};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::{Map, Value, json};

pub use crate::task::{
    FailedRun, Misfire, Overlap, ParamDef, TaskContext, TaskDef, TaskError, TaskOutcome,
};
pub use futures::future::BoxFuture;
pub use inventory;
pub use kairos_schedule::DstPolicy;
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

/// Runs a task: `read` is what the generated `__kairos_read` made of the run's params,
/// either a starter that calls the function with the run's context, or why the params do
/// not fit it.
pub fn start<S>(read: Result<S, TaskError>, ctx: TaskContext) -> BoxFuture<'static, TaskOutcome>
where
    S: FnOnce(TaskContext) -> BoxFuture<'static, TaskOutcome>,
{
    match read {
        Ok(start) => start(ctx),
        Err(e) => rejected(e),
    }
}

/// The verdict of `__kairos_read` on a run's params, without running the task: the same
/// reading as [`start`]'s, so the check at the door and the run agree, messages included.
pub fn verdict<S>(read: Result<S, TaskError>) -> Result<(), TaskError> {
    read.map(|_| ())
}

/// Boxes the future of an `on_failure` function.
pub fn failure_hook<F>(fut: F) -> BoxFuture<'static, ()>
where
    F: Future<Output = ()> + Send + 'static,
{
    Box::pin(fut)
}

/// What a task's parameter must be: readable from the run's JSON params. A trait of
/// its own for its error message, which names the parameter's type and the fix.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task parameter: it does not implement `serde::Deserialize`",
    label = "a task's parameters are read from the run's JSON params",
    note = "derive `serde::Deserialize` for it, or take a type that implements it"
)]
pub trait TaskParam: DeserializeOwned {}

impl<T: DeserializeOwned> TaskParam for T {}

// How the generated code reads a parameter: `Param::<T>::new().take(..)`. For every
// type that is the `TakeParam` trait's method, which reads it with `Params::take`. For
// `TaskContext` it is the inherent method below, found first: the macro recognises the
// context by its name alone, so one imported under another name (`use
// kairos::TaskContext as Ctx`) is taken for a parameter, and rather than serde's error
// (with a list of the types that do implement `Deserialize`) its bound gives one that
// says what to write.

/// A parameter of type `T` to read from the run's params.
#[derive(Debug)]
pub struct Param<T>(PhantomData<T>);

impl<T> Param<T> {
    /// The reader of a parameter of type `T`.
    pub const fn new() -> Self {
        Param(PhantomData)
    }
}

impl<T> Default for Param<T> {
    fn default() -> Self {
        Param::new()
    }
}

/// Reads a parameter (see [`Param`]).
pub trait TakeParam<T> {
    /// Takes parameter `name` from `params` (see [`Params::take`]).
    fn take(self, params: &mut Params, name: &str, type_name: &str) -> Option<T>
    where
        T: TaskParam;
}

impl<T> TakeParam<T> for Param<T> {
    fn take(self, params: &mut Params, name: &str, type_name: &str) -> Option<T>
    where
        T: TaskParam,
    {
        params.take(name, type_name)
    }
}

impl Param<TaskContext> {
    /// Never compiles: `Params` does not implement [`ContextByName`], whose message
    /// says to name the context `TaskContext`.
    pub fn take<P: ContextByName>(self, _: &mut P, _: &str, _: &str) -> Option<TaskContext> {
        None
    }
}

/// Implemented by nothing: the bound that reports a task context the macro did not
/// recognise (see [`Param`]).
#[diagnostic::on_unimplemented(
    message = "this parameter is the task context under another name: \
               #[kairos::task] recognises the context by its name",
    label = "write `TaskContext` or `kairos::TaskContext` here",
    note = "other parameters are read from the run's JSON params, which cannot hold a context"
)]
pub trait ContextByName {}

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
    pub fn take<T: TaskParam>(&mut self, name: &str, type_name: &str) -> Option<T> {
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
        // With the path inside the value, for a struct or a list: `parameter
        // `p.items[2].id``, not only `parameter `p``.
        Some(v) => serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." {
                name.to_string()
            } else if path.starts_with('[') {
                format!("{name}{path}")
            } else {
                format!("{name}.{path}")
            };
            TaskError::InvalidParams(format!("parameter `{at}`: {}", e.inner()))
        }),
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

// Whether a parameter may be left out, as a `const` (a `ParamDef` is built in a static):
// `ParamType::<T>::REQUIRED` resolves to the inherent constant (`false`) when `T` is an
// `Option<_>`, under any path or alias, and to the `Required` trait's (`true`) otherwise,
// since inherent associated items win over trait ones. At run time a missing parameter
// is decided by `T::deserialize(Missing)`, which accepts exactly the types whose
// `Deserialize` reads a missing value as `None`; that is `Option` and any wrapper that
// defers to it (such as a `#[serde(transparent)]` newtype of an `Option`). A `const`
// cannot call `deserialize`, so such wrappers are published as required though a run may
// leave them out; `check_params` and the run still agree.

/// Carries a parameter's type for the `REQUIRED` lookup.
pub struct ParamType<T: ?Sized>(PhantomData<T>);

impl<T> ParamType<Option<T>> {
    /// An `Option` parameter may be left out.
    pub const REQUIRED: bool = false;
}

/// `REQUIRED` for every parameter type that is not an `Option`.
pub trait Required {
    /// Any other parameter must be given.
    const REQUIRED: bool = true;
}

impl<T: ?Sized> Required for ParamType<T> {}

// A parameter's JSON Schema is picked by autoref specialization, like the return value's
// outcome below: the generated code calls `(&&SchemaOf::<T>::new()).kairos_schema()`,
// which finds `KnownSchema` (on `&SchemaOf<T>`) when `T: ParamSchema`, and `AnySchema`
// (on `SchemaOf<T>`, one autoderef further) for every other type, whose schema `{}`
// accepts any value. Other types are still checked exactly, by serde, in `check_params`;
// the schema is for where only it is available (the admin CLI).

/// Carries a parameter's type for the `kairos_schema` lookup.
pub struct SchemaOf<T: ?Sized>(PhantomData<T>);

impl<T: ?Sized> SchemaOf<T> {
    /// The `SchemaOf` type `T`.
    pub const fn new() -> Self {
        SchemaOf(PhantomData)
    }
}

impl<T: ?Sized> Default for SchemaOf<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Selects the schema of a type kairos knows.
pub trait KnownSchema {
    /// `T`'s [`ParamSchema`].
    fn kairos_schema(&self) -> Value;
}

impl<T: ParamSchema + ?Sized> KnownSchema for &SchemaOf<T> {
    fn kairos_schema(&self) -> Value {
        T::param_schema()
    }
}

/// Selects `{}` (any value) for every other type.
pub trait AnySchema {
    /// `{}`.
    fn kairos_schema(&self) -> Value {
        Value::Object(Map::new())
    }
}

impl<T: ?Sized> AnySchema for SchemaOf<T> {}

/// A parameter type whose JSON Schema kairos knows: one that accepts exactly the JSON
/// values serde reads into the type, using only the keywords `schema_check` handles.
/// Every schema is a JSON object.
pub trait ParamSchema {
    /// The type's JSON Schema.
    fn param_schema() -> Value;
}

macro_rules! schema {
    ($($t:ty),* => $schema:expr) => {
        $(impl ParamSchema for $t {
            fn param_schema() -> Value {
                $schema
            }
        })*
    };
}

macro_rules! bounded_integers {
    ($($t:ty),*) => {
        $(schema!($t => json!({
            "type": "integer",
            "minimum": <$t>::MIN,
            "maximum": <$t>::MAX,
        }));)*
    };
}

bounded_integers!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
// Every integer a JSON value holds fits these.
schema!(u128 => json!({ "type": "integer", "minimum": 0 }));
schema!(i128 => json!({ "type": "integer" }));
schema!(bool => json!({ "type": "boolean" }));
schema!(f32, f64 => json!({ "type": "number" }));
schema!(String, str => json!({ "type": "string" }));
schema!(char => json!({ "type": "string", "minLength": 1, "maxLength": 1 }));
schema!(Value => json!({}));
schema!(Map<String, Value> => json!({ "type": "object" }));
schema!(DateTime<Utc> => json!({ "type": "string", "format": "date-time" }));

impl<T: ParamSchema> ParamSchema for Option<T> {
    fn param_schema() -> Value {
        json!({ "anyOf": [T::param_schema(), { "type": "null" }] })
    }
}

impl<T: ParamSchema + ?Sized> ParamSchema for Box<T> {
    fn param_schema() -> Value {
        T::param_schema()
    }
}

impl<T: ParamSchema + ?Sized> ParamSchema for Arc<T> {
    fn param_schema() -> Value {
        T::param_schema()
    }
}

fn array_of<T: ParamSchema>() -> Value {
    json!({ "type": "array", "items": T::param_schema() })
}

fn object_of<T: ParamSchema>() -> Value {
    json!({ "type": "object", "additionalProperties": T::param_schema() })
}

impl<T: ParamSchema> ParamSchema for Vec<T> {
    fn param_schema() -> Value {
        array_of::<T>()
    }
}

impl<T: ParamSchema> ParamSchema for VecDeque<T> {
    fn param_schema() -> Value {
        array_of::<T>()
    }
}

impl<T: ParamSchema, S> ParamSchema for HashSet<T, S> {
    fn param_schema() -> Value {
        array_of::<T>()
    }
}

impl<T: ParamSchema> ParamSchema for BTreeSet<T> {
    fn param_schema() -> Value {
        array_of::<T>()
    }
}

impl<T: ParamSchema, S> ParamSchema for HashMap<String, T, S> {
    fn param_schema() -> Value {
        object_of::<T>()
    }
}

impl<T: ParamSchema> ParamSchema for BTreeMap<String, T> {
    fn param_schema() -> Value {
        object_of::<T>()
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
    ///
    /// A [`TaskError`] returned as the error (directly, inside an `anyhow::Error`, or
    /// boxed), such as [`crate::snooze`], keeps its meaning.
    pub fn outcome<T: Serialize, E: Display + 'static>(self, out: Result<T, E>) -> TaskOutcome {
        match out {
            Ok(v) => to_result(&v),
            Err(e) => Err(task_error(e)),
        }
    }
}

/// The [`TaskError`] an error stands for: itself, one found in an `anyhow` chain or a
/// boxed error, or else a plain failure with the error's text.
fn task_error<E: Display + 'static>(e: E) -> TaskError {
    let any = &e as &dyn std::any::Any;
    let found = if let Some(t) = any.downcast_ref::<TaskError>() {
        Some(t.clone())
    } else if let Some(a) = any.downcast_ref::<anyhow::Error>() {
        a.chain()
            .find_map(|c| c.downcast_ref::<TaskError>())
            .cloned()
    } else if let Some(b) = any.downcast_ref::<Box<dyn std::error::Error + Send + Sync>>() {
        b.downcast_ref::<TaskError>().cloned()
    } else {
        None
    };
    found.unwrap_or_else(|| TaskError::Failed(format!("{e:#}")))
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
    fn a_problem_inside_a_value_is_named_by_its_path() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Item {
            id: u32,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Payload {
            items: Vec<Item>,
            label: String,
        }
        let mut map = Map::new();
        map.insert(
            "p".into(),
            json!({"items": [{"id": 1}, {"id": "2"}], "label": "x"}),
        );
        let e = take_param::<Payload>(&mut map, "p", "Payload").unwrap_err();
        assert_eq!(
            e,
            invalid("parameter `p.items[1].id`: invalid type: string \"2\", expected u32")
        );
        map.insert("v".into(), json!([1, "x"]));
        let e = take_param::<Vec<u8>>(&mut map, "v", "Vec<u8>").unwrap_err();
        assert_eq!(
            e,
            invalid("parameter `v[1]`: invalid type: string \"x\", expected u8")
        );
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

    /// What the generated code computes for a parameter of type `$t`: (required, schema).
    macro_rules! param {
        ($t:ty) => {{
            #[allow(unused_imports)]
            use super::{AnySchema as _, KnownSchema as _, Required as _};
            const REQUIRED: bool = ParamType::<$t>::REQUIRED;
            (REQUIRED, (&&SchemaOf::<$t>::new()).kairos_schema())
        }};
    }

    /// Whether the run accepts a missing `$t`, as `take_param` decides.
    fn accepts_missing<T: DeserializeOwned>() -> bool {
        T::deserialize(Missing).is_ok()
    }

    #[test]
    fn required_is_false_exactly_for_option() {
        type MaybeCount = Option<u32>;
        assert!(param!(u32).0 && !accepts_missing::<u32>());
        assert!(param!(String).0 && !accepts_missing::<String>());
        assert!(param!(Value).0 && !accepts_missing::<Value>());
        assert!(param!(Vec<Option<u8>>).0 && !accepts_missing::<Vec<Option<u8>>>());
        assert!(!param!(Option<u32>).0 && accepts_missing::<Option<u32>>());
        assert!(!param!(std::option::Option<Vec<String>>).0);
        assert!(!param!(MaybeCount).0 && accepts_missing::<MaybeCount>());
        assert!(!param!(Option<Option<u8>>).0 && accepts_missing::<Option<Option<u8>>>());

        // The documented gap: a wrapper that defers to `Option` may be missing at run
        // time but is published as required.
        #[derive(serde::Deserialize)]
        #[serde(transparent)]
        struct Wrapper(#[allow(dead_code)] Option<u8>);
        assert!(param!(Wrapper).0 && accepts_missing::<Wrapper>());
    }

    #[test]
    fn schemas_of_known_types() {
        assert_eq!(param!(bool).1, json!({"type": "boolean"}));
        assert_eq!(
            param!(u8).1,
            json!({"type": "integer", "minimum": 0, "maximum": 255})
        );
        assert_eq!(
            param!(i32).1,
            json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX})
        );
        assert_eq!(
            param!(u64).1,
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})
        );
        assert_eq!(
            param!(i64).1,
            json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX})
        );
        assert_eq!(param!(u128).1, json!({"type": "integer", "minimum": 0}));
        assert_eq!(param!(f32).1, json!({"type": "number"}));
        assert_eq!(param!(String).1, json!({"type": "string"}));
        assert_eq!(param!(Box<str>).1, json!({"type": "string"}));
        assert_eq!(
            param!(char).1,
            json!({"type": "string", "minLength": 1, "maxLength": 1})
        );
        assert_eq!(
            param!(Option<String>).1,
            json!({"anyOf": [{"type": "string"}, {"type": "null"}]})
        );
        let array_of_bools = json!({"type": "array", "items": {"type": "boolean"}});
        assert_eq!(param!(Vec<bool>).1, array_of_bools);
        assert_eq!(param!(VecDeque<bool>).1, array_of_bools);
        assert_eq!(param!(HashSet<bool>).1, array_of_bools);
        assert_eq!(param!(BTreeSet<bool>).1, array_of_bools);
        let map_of_strings = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert_eq!(param!(HashMap<String, String>).1, map_of_strings);
        assert_eq!(param!(BTreeMap<String, String>).1, map_of_strings);
        assert_eq!(param!(Box<String>).1, json!({"type": "string"}));
        assert_eq!(param!(Arc<String>).1, json!({"type": "string"}));
        assert_eq!(param!(Value).1, json!({}));
        assert_eq!(param!(Map<String, Value>).1, json!({"type": "object"}));
        assert_eq!(
            param!(DateTime<Utc>).1,
            json!({"type": "string", "format": "date-time"})
        );
        assert_eq!(
            param!(Option<Vec<Option<u8>>>).1,
            json!({"anyOf": [
                {"type": "array", "items": {"anyOf": [
                    {"type": "integer", "minimum": 0, "maximum": 255},
                    {"type": "null"},
                ]}},
                {"type": "null"},
            ]})
        );
    }

    #[test]
    fn other_types_accept_any_value() {
        #[derive(serde::Deserialize)]
        struct Custom {}
        assert_eq!(param!(Custom).1, json!({}));
        // Known containers of unknown types too: only top-level types are picked.
        assert_eq!(param!(Vec<Custom>).1, json!({}));
        assert_eq!(param!(HashMap<u32, String>).1, json!({}));
        assert_eq!(param!(Option<Custom>).1, json!({}));
        assert!(!param!(Option<Custom>).0);
    }

    #[test]
    fn start_and_verdict_agree() {
        fn read(
            params: Value,
        ) -> Result<impl FnOnce(TaskContext) -> BoxFuture<'static, TaskOutcome>, TaskError>
        {
            let mut p = Params::new(params, &["n"]);
            let n = p.take::<u32>("n", "u32");
            p.finish()?;
            let n = n.unwrap();
            Ok(move |_ctx: TaskContext| handler(async move { Ok(Some(json!(n))) }))
        }
        let ctx = || {
            TaskContext::new(
                1,
                "t",
                None,
                Utc::now(),
                1,
                tokio_util::sync::CancellationToken::new(),
            )
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for params in [
            json!({"n": 3}),
            json!({"n": -1}),
            json!({}),
            json!({"n": 1, "m": 2}),
        ] {
            let run = rt.block_on(start(read(params.clone()), ctx()));
            assert_eq!(
                verdict(read(params.clone())),
                run.clone().map(|_| ()),
                "{params}"
            );
        }
        assert_eq!(
            rt.block_on(start(read(json!({"n": 3})), ctx())),
            Ok(Some(json!(3)))
        );
    }

    #[test]
    // The `&`s look needless but are how the generated code picks the impl.
    #[allow(clippy::needless_borrow)]
    fn task_errors_keep_their_meaning_through_anyhow_and_boxes() {
        use super::ResultKind as _;
        let d = std::time::Duration::from_secs(60);
        let direct: Result<(), TaskError> = Err(crate::snooze(d));
        assert_eq!(
            (&&&Kind::of(&direct)).kairos_kind().outcome(direct),
            Err(TaskError::Snooze(d))
        );
        let wrapped: anyhow::Result<()> =
            Err(anyhow::Error::from(crate::snooze(d)).context("upstream busy"));
        assert_eq!(
            (&&&Kind::of(&wrapped)).kairos_kind().outcome(wrapped),
            Err(TaskError::Snooze(d))
        );
        let boxed: Result<(), Box<dyn std::error::Error + Send + Sync>> =
            Err(Box::new(TaskError::InvalidParams("x".into())));
        assert_eq!(
            (&&&Kind::of(&boxed)).kairos_kind().outcome(boxed),
            Err(TaskError::InvalidParams("x".into()))
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
