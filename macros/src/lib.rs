//! The `#[kairos::task]` attribute. Use it through the `kairos` crate, which re-exports
//! it and provides the types the generated code uses.
//!
//! The macro works in stages: `attr` parses the `key = value` list, `valid` checks what
//! it means (cron expressions, zones and durations with the runtime's own parser) and
//! what the function looks like, and `expand` generates the registration. On any error the
//! function is emitted unchanged next to the errors, so the rest of the crate still
//! compiles and IDEs keep working.

use proc_macro::TokenStream;

mod attr;
mod expand;
mod valid;

/// Registers an `async fn` as a kairos task.
///
/// The function stays as written (you can still call it directly); the attribute adds a
/// hidden handler that the scheduler calls with a run's context and JSON params, and
/// registers the task's [`TaskDef`] so `Registry::from_inventory()` finds it.
///
/// # Keys
///
/// All keys are optional. A key left out falls back to the `[scheduler]` defaults of
/// `jobs.toml`.
///
/// | key | value | `TaskDef` field |
/// |---|---|---|
/// | `name` | `"sync_emails"`; defaults to the function's name | `name` |
/// | `schedule` | cron expression: 5 or 6 fields, or `@daily`, `@hourly`, ... | `schedule` |
/// | `timezone` | IANA zone for `schedule`, such as `"Europe/Paris"`; needs `schedule` | `timezone` |
/// | `interval_minutes` | whole minutes, at least 1; not with `schedule` | `interval` |
/// | `max_instances` | runs of this task at once, at least 1 | `max_instances` |
/// | `max_retries` | retries after a failed attempt | `max_retries` |
/// | `retry_delay` | duration such as `"30s"`, `"5m"`, `"1h30m"`: base of the backoff | `retry_delay` |
/// | `timeout` | duration after which an attempt is cancelled as timed out | `timeout` |
/// | `priority` | `i32`, lower runs first; may be negative | `priority` |
/// | `queue` | name of the queue the task's runs go to | `queue` |
/// | `on_failure` | path to an `async fn(kairos::FailedRun)`, called after the final failed attempt | `on_failure` |
/// | `misfire` | what the task's job does with slots missed by more than `misfire_grace`: `"skip"`, `"run_once"` or `"catch_up"` | `misfire` |
/// | `max_catch_up` | with `misfire = "catch_up"` only: how many missed slots run at most, at least 1 | `max_catch_up` |
/// | `misfire_grace` | duration such as `"30s"` (zero allowed): how late a slot may still run as an ordinary one | `misfire_grace` |
/// | `overlap` | what a slot does while `max_instances` runs are active: `"skip"`, `"queue"` or `"replace"` | `overlap` |
/// | `dst` | how `schedule` treats daylight-saving gaps and repeats: `"debian"`, `"skip"` or `"both"`; needs `schedule` | `dst` |
///
/// Cron expressions, zones and durations are checked at compile time by the same parser
/// the scheduler uses, as are policy names, conflicting keys, unknown or repeated keys,
/// and the shape of the function; errors point at the offending token.
///
/// # Parameters and result
///
/// - A parameter of type `TaskContext` or `&TaskContext` (under any path) receives the
///   run's context. The macro recognises it by that name: under an alias (`use
///   kairos::TaskContext as Ctx`) it is taken for a parameter, and the compile error
///   says to write `TaskContext`.
/// - Every other parameter is read by name from the run's params, which must be a JSON
///   object (or `null` when there are none), and deserialized with serde. An `Option`
///   parameter may be left out. A missing, ill-typed or unknown key fails the run with
///   `TaskError::InvalidParams`, which is not retried.
/// - The parameters are published in `TaskDef::params` (name, type as written, whether
///   required, JSON Schema; `TaskDef::params_schema` assembles them), and
///   `TaskDef::check_params` reads params exactly as a run does, without running it, so
///   bad params can be refused where a run is enqueued with the message the run would
///   fail with.
/// - A parameter is published as optional (`required: false`) when its type is an
///   `Option`, under any path or alias. A run also accepts a missing value for a custom
///   type whose `Deserialize` reads one as `None` (such as a `#[serde(transparent)]`
///   wrapper of an `Option`); such a parameter is published as required, though
///   `check_params` agrees with the run.
/// - The JSON Schema is exact for `bool`, integers (with their bounds), `f32`, `f64`,
///   `String`, `char`, `Option`, `Vec`, `VecDeque`, `HashSet`, `BTreeSet`, `HashMap` and
///   `BTreeMap` with `String` keys, `Box`, `Arc`, `serde_json::Value` and `Map`,
///   `chrono::DateTime<Utc>`, and these nested in each other. Any other type (or a
///   container of one) gets `{}`, any value; `check_params` still checks it with serde.
/// - The function may return `()`, any `Serialize` value, or `Result<T, E>` with
///   `T: Serialize` and `E: Display` (such as `anyhow::Result<T>`). The value is stored
///   as the run's JSON result; `()`, `Ok(())` and other values that serialize to `null`
///   store none. `Err(e)` fails the run with `format!("{e:#}")`, which includes an
///   `anyhow` context chain, and is retried per `max_retries`.
///
/// # Example
///
/// ```
/// use kairos::{FailedRun, TaskContext};
///
/// #[derive(serde::Serialize)]
/// struct Report {
///     pages: u32,
/// }
///
/// #[kairos::task(timeout = "30m", max_retries = 5, retry_delay = "10m",
///                priority = 1, max_instances = 2, on_failure = notify_admin)]
/// async fn process_document(ctx: TaskContext, doc_id: String) -> anyhow::Result<Report> {
///     if ctx.is_cancelled() {
///         anyhow::bail!("cancelled before {doc_id} was read");
///     }
///     Ok(Report { pages: 3 })
/// }
///
/// async fn notify_admin(run: FailedRun) {
///     eprintln!("run {} of {} failed: {}", run.run_id, run.task, run.error);
/// }
///
/// #[kairos::task(schedule = "0 0 * * *", timezone = "Asia/Shanghai", max_instances = 1,
///                misfire = "catch_up", max_catch_up = 7, dst = "skip")]
/// async fn daily_report() {}
///
/// # fn main() {
/// let registry = kairos::Registry::from_inventory().unwrap();
/// let task = registry.get("process_document").unwrap();
/// assert_eq!(task.max_retries, Some(5));
/// assert!(task.on_failure.is_some());
/// let check = task.check_params.unwrap();
/// assert!(check(&serde_json::json!({ "doc_id": "d1" })).is_ok());
/// assert_eq!(
///     check(&serde_json::json!({})).unwrap_err().to_string(),
///     "invalid params: missing parameter `doc_id` (String)"
/// );
/// let daily = registry.get("daily_report").unwrap();
/// assert_eq!(daily.timezone, Some("Asia/Shanghai"));
/// assert_eq!(daily.misfire, Some(kairos::Misfire::CatchUp));
/// # }
/// ```
///
/// `process_document` above expands to the function itself, plus roughly:
///
/// ```no_run,standalone_crate
/// # use kairos::{FailedRun, ParamDef, TaskContext, TaskDef, TaskError};
/// # use kairos::task::TaskOutcome;
/// # use futures::future::BoxFuture;
/// # use std::time::Duration;
/// # #[derive(serde::Serialize)] struct Report { pages: u32 }
/// # async fn process_document(ctx: TaskContext, doc_id: String) -> anyhow::Result<Report> {
/// #     Ok(Report { pages: 3 })
/// # }
/// # async fn notify_admin(run: FailedRun) {}
/// // Reads the params as the function takes them, for a run (`handler`) and for the
/// // check where a run is enqueued (`check_params`), so that both agree.
/// fn read(params: serde_json::Value) -> Result<String, TaskError> {
///     // Read `doc_id` by name. (The real reader also rejects unknown keys and lists
///     // every problem in one error.)
///     match params.get("doc_id").cloned().map(serde_json::from_value) {
///         Some(Ok(v)) => Ok(v),
///         _ => Err(TaskError::InvalidParams("missing parameter `doc_id` (String)".into())),
///     }
/// }
///
/// fn handler(ctx: TaskContext, params: serde_json::Value) -> BoxFuture<'static, TaskOutcome> {
///     let doc_id = match read(params) {
///         Ok(v) => v,
///         Err(e) => return Box::pin(async move { Err(e) }),
///     };
///     Box::pin(async move {
///         match process_document(ctx, doc_id).await {
///             Ok(report) => Ok(Some(serde_json::to_value(report).unwrap())),
///             Err(e) => Err(TaskError::Failed(format!("{e:#}"))),
///         }
///     })
/// }
///
/// fn check_params(params: &serde_json::Value) -> Result<(), TaskError> {
///     read(params.clone()).map(|_| ())
/// }
///
/// fn doc_id_schema() -> serde_json::Value {
///     serde_json::json!({ "type": "string" })
/// }
///
/// fn on_failure(run: FailedRun) -> BoxFuture<'static, ()> {
///     Box::pin(notify_admin(run))
/// }
///
/// inventory::submit! {
///     TaskDef {
///         timeout: Some(Duration::from_secs(30 * 60)),
///         max_retries: Some(5),
///         retry_delay: Some(Duration::from_secs(10 * 60)),
///         priority: Some(1),
///         max_instances: Some(2),
///         on_failure: Some(on_failure),
///         params: Some(&[ParamDef {
///             name: "doc_id",
///             rust_type: "String",
///             required: true,
///             schema: doc_id_schema,
///         }]),
///         check_params: Some(check_params),
///         ..TaskDef::new("process_document", handler, concat!(file!(), ":", line!()))
///     }
/// }
/// # fn main() {}
/// ```
///
/// # Errors at compile time
///
/// ```compile_fail
/// #[kairos::task(schedule = "0 0 * * *", interval_minutes = 15)] // use either, not both
/// async fn both() {}
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[kairos::task(schedule = "0 25 * * *")] // there is no hour 25
/// async fn bad_cron() {}
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[kairos::task] // the `async` keyword is missing
/// fn not_async() {}
/// # fn main() {}
/// ```
///
/// [`TaskDef`]: https://docs.rs/kairos/latest/kairos/task/struct.TaskDef.html
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    task_impl(args.into(), item.into()).into()
}

fn task_impl(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let e = syn::Error::new(
                e.span(),
                "#[kairos::task] applies only to an `async fn` (a free function, not a \
                 struct, impl or other item)",
            );
            return with_error(item, e);
        }
    };
    // Validate even when some keys did not parse, to report every problem at once.
    let (attrs, errors) = attr::parse(args);
    match (valid::validate(attrs, &func), errors) {
        (Ok(task), None) => expand::expand(&task, &func),
        (Ok(_), Some(e)) | (Err(e), None) => with_error(item, e),
        (Err(e), Some(mut all)) => {
            all.combine(e);
            with_error(item, all)
        }
    }
}

/// The item unchanged plus the errors, so the rest of the crate keeps compiling.
fn with_error(item: proc_macro2::TokenStream, e: syn::Error) -> proc_macro2::TokenStream {
    let mut out = item;
    out.extend(e.into_compile_error());
    out
}
