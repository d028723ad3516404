//! Validation: checks what the keys mean (cron expression, zone, durations, conflicting
//! keys, ranges) and what the function looks like (async, no `self`, no generics, named
//! parameters), producing the [`Task`] that `expand.rs` turns into code.
//!
//! Schedules, zones and durations are checked with `kairos_schedule`, the parser the
//! runtime uses, so the macro accepts exactly what the scheduler can run.

use std::time::Duration;

use quote::ToTokens;
use syn::{FnArg, Ident, ItemFn, LitStr, Pat, Path, Type};

use crate::attr::{Attrs, Int, push};

/// A task ready to be expanded: every value checked and converted.
#[derive(Debug)]
pub(crate) struct Task {
    pub(crate) name: String,
    pub(crate) schedule: Option<String>,
    pub(crate) timezone: Option<String>,
    pub(crate) interval_secs: Option<u64>,
    pub(crate) max_instances: Option<u32>,
    pub(crate) max_retries: Option<u32>,
    pub(crate) retry_delay: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) priority: Option<i32>,
    pub(crate) queue: Option<String>,
    pub(crate) on_failure: Option<Path>,
    /// The `Misfire` variant, such as `CatchUp`.
    pub(crate) misfire: Option<&'static str>,
    pub(crate) max_catch_up: Option<u32>,
    pub(crate) misfire_grace: Option<Duration>,
    /// The `Overlap` variant, such as `Queue`.
    pub(crate) overlap: Option<&'static str>,
    /// The `DstPolicy` variant, such as `Skip`.
    pub(crate) dst: Option<&'static str>,
    pub(crate) params: Vec<Param>,
}

/// A policy key's values: the name written in the attribute and the variant it selects.
type Policies = [(&'static str, &'static str)];

/// `kairos::Misfire`; a unit test checks these against the enum.
pub(crate) const MISFIRE: &Policies = &[
    ("skip", "Skip"),
    ("run_once", "RunOnce"),
    ("catch_up", "CatchUp"),
];

/// `kairos::Overlap`; a unit test checks these against the enum.
pub(crate) const OVERLAP: &Policies =
    &[("skip", "Skip"), ("queue", "Queue"), ("replace", "Replace")];

/// `kairos_schedule::DstPolicy`; a unit test checks these against the enum.
pub(crate) const DST: &Policies = &[("debian", "Debian"), ("skip", "Skip"), ("both", "Both")];

/// One argument of the task function, in order.
#[derive(Debug)]
pub(crate) enum Param {
    /// A `TaskContext` (or `&TaskContext`), filled from the run.
    Context { by_ref: bool },
    /// A value read from the run's params by name.
    Named {
        ident: Ident,
        ty: Box<Type>,
        /// The type as written, for "missing parameter" messages.
        type_name: String,
    },
}

/// Checks `attrs` against each other and `func`, reporting every problem found.
pub(crate) fn validate(attrs: Attrs, func: &ItemFn) -> syn::Result<Task> {
    let mut errors = None;
    let mut check = |r: syn::Result<()>| {
        if let Err(e) = r {
            push(&mut errors, e);
        }
    };

    check(check_signature(func));
    let params = match params(func) {
        Ok(p) => p,
        Err(e) => {
            check(Err(e));
            Vec::new()
        }
    };

    let name = match &attrs.name {
        Some(lit) => {
            let v = lit.value();
            if v.trim().is_empty() {
                check(Err(syn::Error::new(
                    lit.span(),
                    "the task name must not be empty; remove `name` to use the function's name",
                )));
            } else if v.trim() != v {
                // `kairos enqueue sync` would not find ` sync`, and a table would not
                // show the difference.
                check(Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "the task name {v:?} has leading or trailing spaces; write {:?}",
                        v.trim()
                    ),
                )));
            }
            // The name is printed in tables and one-line messages (and names the task's
            // own job), where a control character would break the line or forge another.
            check(control_character(lit, "task"));
            v
        }
        None => func.sig.ident.to_string(),
    };

    if let (Some(s), Some(i)) = (&attrs.schedule, &attrs.interval_minutes) {
        let mut e = syn::Error::new(
            i.span,
            "use either `schedule` or `interval_minutes`, not both",
        );
        e.combine(syn::Error::new(s.span(), "`schedule` is given here"));
        check(Err(e));
    }
    if let (None, Some(tz)) = (&attrs.schedule, &attrs.timezone) {
        check(Err(syn::Error::new(
            tz.span(),
            "`timezone` applies only to a cron `schedule`; add `schedule = \"...\"` or remove `timezone`",
        )));
    }

    if let (None, Some(dst)) = (&attrs.schedule, &attrs.dst) {
        check(Err(syn::Error::new(
            dst.span(),
            "`dst` applies only to a cron `schedule`; add `schedule = \"...\"` or remove `dst`",
        )));
    }

    let tz = match &attrs.timezone {
        Some(lit) => match kairos_schedule::parse_timezone(&lit.value()) {
            Ok(tz) => Some(tz),
            Err(e) => {
                check(Err(syn::Error::new(lit.span(), e)));
                None
            }
        },
        None => None,
    };
    if let Some(lit) = &attrs.schedule {
        // Checked in UTC when the zone is missing or invalid: whether an expression
        // parses does not depend on the zone.
        let zone = tz.unwrap_or(kairos_schedule::Tz::UTC);
        if let Err(e) = kairos_schedule::CronSchedule::parse(&lit.value(), zone) {
            check(Err(syn::Error::new(lit.span(), e)));
        }
    }

    let interval_secs = match &attrs.interval_minutes {
        // Capped so that the interval in seconds (and milliseconds) fits in a u64.
        Some(int) => match int_in_range(int, "interval_minutes", 1, u64::MAX / 60_000) {
            Ok(m) => Some(m * 60),
            Err(e) => {
                check(Err(e));
                None
            }
        },
        None => None,
    };

    let mut int = |v: &Option<Int>, key: &str, min, max| match v {
        Some(i) => match int_in_range(i, key, min, max) {
            Ok(n) => u32::try_from(n).ok(),
            Err(e) => {
                check(Err(e));
                None
            }
        },
        None => None,
    };
    // The bounds kairos itself enforces (`MAX_RETRIES`, `config::MAX_CATCH_UP`).
    let max_instances = int(&attrs.max_instances, "max_instances", 1, u32::MAX.into());
    let max_retries = int(&attrs.max_retries, "max_retries", 0, 10_000);
    let max_catch_up = int(&attrs.max_catch_up, "max_catch_up", 1, 100_000);

    let mut pick = |lit: &Option<LitStr>, what: &str, values: &'static Policies| {
        policy(lit, what, values).unwrap_or_else(|e| {
            check(Err(e));
            None
        })
    };
    let misfire = pick(&attrs.misfire, "misfire", MISFIRE);
    let overlap = pick(&attrs.overlap, "overlap", OVERLAP);
    let dst = pick(&attrs.dst, "dst", DST);

    // Only when `misfire` is missing or valid: a misspelled one is reported already.
    if let Some(n) = &attrs.max_catch_up {
        let msg = "`max_catch_up` applies only with `misfire = \"catch_up\"`; \
                   add `misfire = \"catch_up\"` or remove `max_catch_up`";
        match (&attrs.misfire, misfire) {
            (None, _) => check(Err(syn::Error::new(n.span, msg))),
            (Some(lit), Some(variant)) if variant != "CatchUp" => {
                let mut e = syn::Error::new(n.span, msg);
                e.combine(syn::Error::new(
                    lit.span(),
                    format!("`misfire = {:?}` is given here", lit.value()),
                ));
                check(Err(e));
            }
            _ => {}
        }
    }

    let priority = match &attrs.priority {
        Some(i) => match i.lit.base10_parse::<i64>() {
            Ok(n) => {
                let n = if i.negative { -n } else { n };
                match i32::try_from(n) {
                    Ok(p) => Some(p),
                    Err(_) => {
                        check(Err(syn::Error::new(
                            i.span,
                            "priority must fit in an i32 (lower runs first)",
                        )));
                        None
                    }
                }
            }
            Err(e) => {
                check(Err(syn::Error::new(i.span, e)));
                None
            }
        },
        None => None,
    };

    let retry_delay = duration(&attrs.retry_delay, "retry_delay", false).unwrap_or_else(|e| {
        check(Err(e));
        None
    });
    let timeout = duration(&attrs.timeout, "timeout", true).unwrap_or_else(|e| {
        check(Err(e));
        None
    });
    let misfire_grace =
        duration(&attrs.misfire_grace, "misfire_grace", false).unwrap_or_else(|e| {
            check(Err(e));
            None
        });

    let queue = match &attrs.queue {
        Some(lit) if lit.value().trim().is_empty() => {
            check(Err(syn::Error::new(
                lit.span(),
                "the queue name must not be empty; remove `queue` to use the default queue",
            )));
            None
        }
        Some(lit) => {
            let v = lit.value();
            // Printed in `queues list` and in messages, as the task name is.
            check(control_character(lit, "queue"));
            Some(v)
        }
        None => None,
    };

    match errors {
        Some(e) => Err(e),
        None => Ok(Task {
            name,
            schedule: attrs.schedule.map(|s| s.value()),
            timezone: attrs.timezone.map(|s| s.value()),
            interval_secs,
            max_instances,
            max_retries,
            retry_delay,
            timeout,
            priority,
            queue,
            on_failure: attrs.on_failure,
            misfire,
            max_catch_up,
            misfire_grace,
            overlap,
            dst,
            params,
        }),
    }
}

/// Parses a non-negative integer key, from `min` to `max`.
fn int_in_range(int: &Int, key: &str, min: u64, max: u64) -> syn::Result<u64> {
    let low = || {
        let msg = if min == 0 {
            format!("{key} cannot be negative")
        } else {
            format!("{key} must be at least {min}")
        };
        syn::Error::new(int.span, msg)
    };
    let high = || syn::Error::new(int.span, format!("{key} is too large (at most {max})"));
    if int.negative {
        return Err(low());
    }
    let n: u64 = int.lit.base10_parse().map_err(|_| high())?;
    if n < min {
        return Err(low());
    }
    if n > max {
        return Err(high());
    }
    Ok(n)
}

/// Refuses a `what` name (`task`, `queue`) holding a control character, naming it.
fn control_character(lit: &LitStr, what: &str) -> syn::Result<()> {
    match lit.value().chars().find(|c| c.is_control()) {
        Some(c) => Err(syn::Error::new(
            lit.span(),
            format!(
                "the {what} name holds the control character U+{:04X}, which is not allowed; \
                 use letters, digits and punctuation",
                u32::from(c)
            ),
        )),
        None => Ok(()),
    }
}

/// The variant a policy key names, or an error listing the valid names, with a "did you
/// mean" when one is close. Without one, the message is the runtime's for a bad policy.
fn policy(
    lit: &Option<LitStr>,
    what: &str,
    values: &'static Policies,
) -> syn::Result<Option<&'static str>> {
    let Some(lit) = lit else { return Ok(None) };
    let value = lit.value();
    if let Some((_, variant)) = values.iter().find(|(name, _)| *name == value) {
        return Ok(Some(variant));
    }
    let names: Vec<&str> = values.iter().map(|(name, _)| *name).collect();
    let msg = match closest(&value, &names) {
        Some(c) => format!(
            "unknown {what} policy `{value}`; did you mean `{c}`? Use one of: {}",
            names.join(", ")
        ),
        None => format!(
            "unknown {what} policy `{value}`; use one of: {}",
            names.join(", ")
        ),
    };
    Err(syn::Error::new(lit.span(), msg))
}

/// The candidate closest to `value`, if it is likely a typo of it: the same up to case
/// and `_`/`-`, or within the edit distance `kairos::suggest` allows for names.
fn closest<'a>(value: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let fold = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let folded = fold(value);
    if let Some(c) = candidates.iter().find(|c| fold(c) == folded) {
        return Some(c);
    }
    let limit = (value.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (distance(&value.to_lowercase(), c), *c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// Levenshtein distance between two strings, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses a duration key.
fn duration(lit: &Option<LitStr>, key: &str, nonzero: bool) -> syn::Result<Option<Duration>> {
    let Some(lit) = lit else { return Ok(None) };
    let d = kairos_schedule::parse_duration(&lit.value())
        .map_err(|e| syn::Error::new(lit.span(), format!("{key}: {e}")))?;
    if nonzero && d.is_zero() {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "{key} must be longer than zero; leave `{key}` out for the default \
                 (`default_timeout` in jobs.toml's [scheduler], 30m unless set)"
            ),
        ));
    }
    Ok(Some(d))
}

fn check_signature(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    let mut errors = None;
    if sig.asyncness.is_none() {
        push(
            &mut errors,
            syn::Error::new_spanned(
                sig.fn_token,
                "the `async` keyword is missing from the function declaration",
            ),
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        push(
            &mut errors,
            syn::Error::new_spanned(
                &sig.generics,
                "a task function cannot be generic: the scheduler calls it with params \
                 deserialized from JSON, so every parameter needs a concrete type",
            ),
        );
    }
    if let Some(c) = &sig.constness {
        push(
            &mut errors,
            syn::Error::new_spanned(c, "a task function cannot be `const`"),
        );
    }
    if let Some(u) = &sig.unsafety {
        push(
            &mut errors,
            syn::Error::new_spanned(
                u,
                "a task function cannot be `unsafe`: the scheduler cannot uphold its contract",
            ),
        );
    }
    if let Some(v) = &sig.variadic {
        push(
            &mut errors,
            syn::Error::new_spanned(v, "a task function cannot be variadic"),
        );
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn params(func: &ItemFn) -> syn::Result<Vec<Param>> {
    let mut out = Vec::new();
    let mut errors = None;
    for arg in &func.sig.inputs {
        match param(arg) {
            Ok(p) => out.push(p),
            Err(e) => push(&mut errors, e),
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn param(arg: &FnArg) -> syn::Result<Param> {
    let arg = match arg {
        FnArg::Receiver(r) => {
            return Err(syn::Error::new_spanned(
                r,
                "a task cannot take `self`: write a free `async fn` and call the method from it",
            ));
        }
        FnArg::Typed(arg) => arg,
    };
    if let Some(by_ref) = context_type(&arg.ty) {
        return Ok(Param::Context { by_ref });
    }
    let ident = match &*arg.pat {
        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
        other => {
            return Err(syn::Error::new_spanned(
                other,
                "task parameters are read from the run's params by name, so each must be \
                 a plain name such as `doc_id: String`, not a pattern",
            ));
        }
    };
    if ident.to_string().starts_with("r#") {
        return Err(syn::Error::new_spanned(
            &ident,
            "a task parameter cannot be a raw identifier: params are looked up by name",
        ));
    }
    check_param_type(&arg.ty)?;
    Ok(Param::Named {
        type_name: type_name(&arg.ty),
        ty: arg.ty.clone(),
        ident,
    })
}

/// `Some(by_ref)` when `ty` is `TaskContext` or `&TaskContext` under any path.
fn context_type(ty: &Type) -> Option<bool> {
    let (ty, by_ref) = match ty {
        Type::Reference(r) if r.mutability.is_none() => (&*r.elem, true),
        other => (other, false),
    };
    match ty {
        Type::Path(p)
            if p.qself.is_none()
                && p.path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "TaskContext" && s.arguments.is_empty()) =>
        {
            Some(by_ref)
        }
        _ => None,
    }
}

fn check_param_type(ty: &Type) -> syn::Result<()> {
    match ty {
        // The context, lent mutably: it is not read from the params at all.
        Type::Reference(r)
            if r.mutability.is_some()
                && context_type(&Type::Reference(syn::TypeReference {
                    mutability: None,
                    ..r.clone()
                }))
                .is_some() =>
        {
            Err(syn::Error::new_spanned(
                ty,
                "take the context as `TaskContext` or `&TaskContext`: its methods need no \
                 `&mut`",
            ))
        }
        Type::Reference(_) => Err(syn::Error::new_spanned(
            ty,
            "a task parameter must be an owned type (e.g. `String`, not `&str`): \
             it is deserialized from the run's JSON params",
        )),
        Type::ImplTrait(_) => Err(syn::Error::new_spanned(
            ty,
            "a task parameter cannot be `impl Trait`: it is deserialized from JSON, \
             so it needs a concrete type",
        )),
        _ => Ok(()),
    }
}

/// The type as a user would write it: `Option<Vec<String>>`, not `Option < Vec < String > >`.
pub(crate) fn type_name(ty: &Type) -> String {
    let mut s = ty.to_token_stream().to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" < ", "<"),
        ("< ", "<"),
        (" <", "<"),
        (" >", ">"),
        (" ,", ","),
        ("& ", "&"),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
        (" ;", ";"),
    ] {
        s = s.replace(from, to);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn run(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> syn::Result<Task> {
        let (attrs, errors) = crate::attr::parse(args);
        if let Some(e) = errors {
            return Err(e);
        }
        validate(attrs, &syn::parse2(item).unwrap())
    }

    fn err(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> Vec<String> {
        run(args, item)
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn converts_values() {
        let t = run(
            quote!(
                schedule = "0 0 * * *",
                timezone = "Asia/Shanghai",
                max_instances = 1,
                retry_delay = "1m30s",
                timeout = "2h",
                priority = -3,
                max_retries = 0
            ),
            quote!(
                async fn daily(
                    ctx: kairos::TaskContext,
                    c2: &TaskContext,
                    doc_id: Option<Vec<String>>,
                ) {
                }
            ),
        )
        .unwrap();
        assert_eq!(t.name, "daily");
        assert_eq!(t.retry_delay, Some(Duration::from_secs(90)));
        assert_eq!(t.timeout, Some(Duration::from_secs(7_200)));
        assert_eq!(t.priority, Some(-3));
        assert_eq!(t.max_retries, Some(0));
        assert!(matches!(t.params[0], Param::Context { by_ref: false }));
        assert!(matches!(t.params[1], Param::Context { by_ref: true }));
        match &t.params[2] {
            Param::Named {
                ident, type_name, ..
            } => {
                assert_eq!(ident, "doc_id");
                assert_eq!(type_name, "Option<Vec<String>>");
            }
            other => panic!("{other:?}"),
        }
        let t = run(
            quote!(interval_minutes = 15),
            quote!(
                async fn f() {}
            ),
        )
        .unwrap();
        assert_eq!(t.interval_secs, Some(900));
        let t = run(
            quote!(timeout = "500us"),
            quote!(
                async fn f() {}
            ),
        )
        .unwrap();
        assert_eq!(t.timeout, Some(Duration::from_micros(500)));
    }

    #[test]
    fn rejects_bad_values() {
        let f = quote!(
            async fn f() {}
        );
        assert!(
            err(quote!(schedule = "61 * * * *"), f.clone())[0]
                .starts_with("invalid cron expression `61 * * * *`: ")
        );
        assert_eq!(
            err(
                quote!(schedule = "@daily", timezone = "Mars/Base"),
                f.clone()
            ),
            [
                "unknown time zone `Mars/Base`: use an IANA name such as `Europe/Paris`, `America/New_York` or `UTC`"
            ]
        );
        assert_eq!(
            err(quote!(schedule = "@daily", interval_minutes = 5), f.clone()),
            [
                "use either `schedule` or `interval_minutes`, not both",
                "`schedule` is given here"
            ]
        );
        assert!(
            err(quote!(timezone = "UTC"), f.clone())[0]
                .starts_with("`timezone` applies only to a cron `schedule`")
        );
        assert_eq!(
            err(quote!(interval_minutes = 0), f.clone()),
            ["interval_minutes must be at least 1"]
        );
        assert_eq!(
            err(quote!(max_instances = 0), f.clone()),
            ["max_instances must be at least 1"]
        );
        assert_eq!(
            err(quote!(max_retries = -1), f.clone()),
            ["max_retries cannot be negative"]
        );
        assert_eq!(
            err(quote!(max_retries = 10001), f.clone()),
            ["max_retries is too large (at most 10000)"]
        );
        assert_eq!(
            err(
                quote!(misfire = "catch_up", max_catch_up = 100001),
                f.clone()
            ),
            ["max_catch_up is too large (at most 100000)"]
        );
        assert!(
            err(quote!(retry_delay = "5 minutes"), f.clone())[0]
                .starts_with("retry_delay: invalid duration `5 minutes`")
        );
        assert_eq!(
            err(quote!(timeout = "0s"), f.clone()),
            [
                "timeout must be longer than zero; leave `timeout` out for the default \
              (`default_timeout` in jobs.toml's [scheduler], 30m unless set)"
            ]
        );
        assert_eq!(
            err(quote!(priority = 3000000000), f.clone()),
            ["priority must fit in an i32 (lower runs first)"]
        );
        assert_eq!(err(quote!(name = ""), f.clone()).len(), 1);
        assert_eq!(
            err(quote!(name = " sync "), f.clone()),
            ["the task name \" sync \" has leading or trailing spaces; write \"sync\""]
        );
        assert_eq!(
            err(quote!(name = "evil\nJOB_FAKE"), f),
            [
                "the task name holds the control character U+000A, which is not allowed; use \
              letters, digits and punctuation"
            ]
        );
        assert_eq!(
            err(
                quote!(queue = "mail\u{7}"),
                quote!(
                    async fn f() {}
                )
            ),
            [
                "the queue name holds the control character U+0007, which is not allowed; use \
              letters, digits and punctuation"
            ]
        );
    }

    #[test]
    fn policies() {
        let f = quote!(
            async fn f() {}
        );
        let t = run(
            quote!(
                schedule = "@daily",
                misfire = "catch_up",
                max_catch_up = 3,
                misfire_grace = "0s",
                overlap = "replace",
                dst = "both"
            ),
            f.clone(),
        )
        .unwrap();
        assert_eq!(t.misfire, Some("CatchUp"));
        assert_eq!(t.max_catch_up, Some(3));
        assert_eq!(t.misfire_grace, Some(Duration::ZERO));
        assert_eq!(t.overlap, Some("Replace"));
        assert_eq!(t.dst, Some("Both"));

        assert_eq!(
            err(quote!(misfire = "runonce"), f.clone()),
            [
                "unknown misfire policy `runonce`; did you mean `run_once`? Use one of: skip, run_once, catch_up"
            ]
        );
        assert_eq!(
            err(quote!(misfire = "CatchUp"), f.clone()),
            [
                "unknown misfire policy `CatchUp`; did you mean `catch_up`? Use one of: skip, run_once, catch_up"
            ]
        );
        assert_eq!(
            err(quote!(overlap = "parallel"), f.clone()),
            ["unknown overlap policy `parallel`; use one of: skip, queue, replace"]
        );
        assert_eq!(
            err(quote!(schedule = "@daily", dst = "debain"), f.clone()),
            ["unknown dst policy `debain`; did you mean `debian`? Use one of: debian, skip, both"]
        );
        assert_eq!(
            err(quote!(interval_minutes = 5, dst = "skip"), f.clone()),
            ["`dst` applies only to a cron `schedule`; add `schedule = \"...\"` or remove `dst`"]
        );
        let needs_catch_up = "`max_catch_up` applies only with `misfire = \"catch_up\"`; \
                              add `misfire = \"catch_up\"` or remove `max_catch_up`";
        assert_eq!(err(quote!(max_catch_up = 3), f.clone()), [needs_catch_up]);
        assert_eq!(
            err(quote!(misfire = "skip", max_catch_up = 3), f.clone()),
            [needs_catch_up, "`misfire = \"skip\"` is given here"]
        );
        // A misspelled `misfire` is reported once, not again by `max_catch_up`.
        assert_eq!(
            err(quote!(misfire = "catchup", max_catch_up = 3), f.clone()).len(),
            1
        );
        assert_eq!(
            err(quote!(misfire = "catch_up", max_catch_up = 0), f.clone()),
            ["max_catch_up must be at least 1"]
        );
        assert!(
            err(quote!(misfire_grace = "soon"), f)[0]
                .starts_with("misfire_grace: invalid duration `soon`")
        );
    }

    #[test]
    fn policy_tables_match_the_enums() {
        fn table(t: &Policies) -> Vec<(String, String)> {
            t.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        }
        fn names<P: std::fmt::Debug>(
            all: &[P],
            as_str: fn(&P) -> &'static str,
        ) -> Vec<(String, String)> {
            all.iter()
                .map(|p| (as_str(p).to_string(), format!("{p:?}")))
                .collect()
        }
        assert_eq!(table(MISFIRE), names(&kairos::Misfire::ALL, |p| p.as_str()));
        assert_eq!(table(OVERLAP), names(&kairos::Overlap::ALL, |p| p.as_str()));
        assert_eq!(
            table(DST),
            names(&kairos_schedule::DstPolicy::ALL, |p| p.as_str())
        );
    }

    #[test]
    fn suggestions() {
        let all = ["skip", "run_once", "catch_up"];
        assert_eq!(closest("runonce", &all), Some("run_once"));
        assert_eq!(closest("Run-Once", &all), Some("run_once"));
        assert_eq!(closest("skp", &all), Some("skip"));
        assert_eq!(closest("never", &all), None);
    }

    #[test]
    fn rejects_bad_functions() {
        assert_eq!(
            err(
                quote!(),
                quote!(
                    fn f() {}
                )
            ),
            ["the `async` keyword is missing from the function declaration"]
        );
        assert!(
            err(
                quote!(),
                quote!(
                    async fn f<T>(t: T) {}
                )
            )[0]
            .starts_with("a task function cannot be generic")
        );
        assert!(
            err(
                quote!(),
                quote!(
                    async fn f(&self) {}
                )
            )[0]
            .starts_with("a task cannot take `self`")
        );
        assert!(
            err(
                quote!(),
                quote!(
                    async fn f((a, b): (u8, u8)) {}
                )
            )[0]
            .starts_with("task parameters are read")
        );
        assert!(
            err(
                quote!(),
                quote!(
                    async fn f(_: u8) {}
                )
            )[0]
            .starts_with("task parameters are read")
        );
        assert!(
            err(
                quote!(),
                quote!(
                    async fn f(s: &str) {}
                )
            )[0]
            .starts_with("a task parameter must be an owned type")
        );
        assert_eq!(
            err(
                quote!(),
                quote!(
                    async fn f(ctx: &mut kairos::TaskContext) {}
                )
            ),
            ["take the context as `TaskContext` or `&TaskContext`: its methods need no `&mut`"]
        );
        assert!(
            err(
                quote!(),
                quote!(
                    async fn f(s: impl Into<String>) {}
                )
            )[0]
            .starts_with("a task parameter cannot be `impl Trait`")
        );
        // Every problem at once.
        assert_eq!(
            err(
                quote!(interval_minutes = 0),
                quote!(
                    fn f(_: u8) {}
                )
            )
            .len(),
            3
        );
    }
}
