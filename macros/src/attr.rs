//! Parsing: the attribute's `key = value` list into [`Attrs`], checking only its shape
//! (known key, given once, right kind of literal). What the values mean is checked in
//! `valid.rs`.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Lit, LitInt, LitStr, Path, Token};

/// The keys `#[kairos::task]` accepts, in the order the docs list them.
pub(crate) const KEYS: &[&str] = &[
    "name",
    "schedule",
    "timezone",
    "interval_minutes",
    "max_instances",
    "max_retries",
    "retry_delay",
    "timeout",
    "priority",
    "queue",
    "on_failure",
    "misfire",
    "max_catch_up",
    "misfire_grace",
    "overlap",
    "dst",
];

/// An integer key's value with the span of its literal (sign included).
#[derive(Debug, Clone)]
pub(crate) struct Int {
    /// The literal's digits, parsed later to the key's type.
    pub(crate) lit: LitInt,
    /// Whether a `-` preceded the literal.
    pub(crate) negative: bool,
    /// The span of the whole value, for errors.
    pub(crate) span: Span,
}

/// The attribute's keys as written; `None` for keys not given.
#[derive(Debug, Default)]
pub(crate) struct Attrs {
    pub(crate) name: Option<LitStr>,
    pub(crate) schedule: Option<LitStr>,
    pub(crate) timezone: Option<LitStr>,
    pub(crate) interval_minutes: Option<Int>,
    pub(crate) max_instances: Option<Int>,
    pub(crate) max_retries: Option<Int>,
    pub(crate) retry_delay: Option<LitStr>,
    pub(crate) timeout: Option<LitStr>,
    pub(crate) priority: Option<Int>,
    pub(crate) queue: Option<LitStr>,
    pub(crate) on_failure: Option<Path>,
    pub(crate) misfire: Option<LitStr>,
    pub(crate) max_catch_up: Option<Int>,
    pub(crate) misfire_grace: Option<LitStr>,
    pub(crate) overlap: Option<LitStr>,
    pub(crate) dst: Option<LitStr>,
}

/// Parses the attribute's arguments, reporting every problem found, not just the first.
///
/// Also returns the keys that did parse, so that their values can still be validated
/// (and their problems reported in the same build) when other keys are wrong.
pub(crate) fn parse(args: TokenStream) -> (Attrs, Option<syn::Error>) {
    let mut attrs = Attrs::default();
    let mut errors: Option<syn::Error> = None;
    let args = without_bare_literals(args, &mut errors);
    let parser = syn::meta::parser(|meta| {
        if let Err(e) = attrs.parse_key(&meta) {
            push(&mut errors, e);
            // Skip the value (if any) so the keys after it are still checked.
            if meta.input.peek(Token![=]) {
                meta.value()?.parse::<syn::Expr>()?;
            }
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(args) {
        push(&mut errors, e);
    }
    (attrs, errors)
}

/// `args` without the arguments that are a lone literal, each reported with what to
/// write instead. syn would stop at the first with "unexpected literal in nested
/// attribute, expected ident", which does not say that a bare string is most likely
/// the task's name written as in other attribute macros (`#[task("sync")]`).
///
/// Arguments are told apart as expressions, so that a comma inside a value (the
/// turbofish of an `on_failure` path) does not split it.
fn without_bare_literals(args: TokenStream, errors: &mut Option<syn::Error>) -> TokenStream {
    let parser = syn::punctuated::Punctuated::<syn::Expr, Token![,]>::parse_terminated;
    // Arguments that are not even expressions: syn's own errors say what is wrong.
    let Ok(list) = parser.parse2(args.clone()) else {
        return args;
    };
    if !list.iter().any(|a| matches!(a, syn::Expr::Lit(_))) {
        return args;
    }
    let mut kept = syn::punctuated::Punctuated::<syn::Expr, Token![,]>::new();
    for arg in list {
        match arg {
            syn::Expr::Lit(l) => push(errors, bare_literal(&l.lit)),
            other => kept.push(other),
        }
    }
    quote::ToTokens::into_token_stream(kept)
}

fn bare_literal(lit: &Lit) -> syn::Error {
    match lit {
        Lit::Str(s) => syn::Error::new(
            s.span(),
            format!(
                "expected `key = value`: to name the task, write `name = {}`",
                s.token()
            ),
        ),
        _ => syn::Error::new(
            lit.span(),
            format!(
                "expected `key = value`, not a bare literal; #[kairos::task] accepts: {}",
                KEYS.join(", ")
            ),
        ),
    }
}

/// Adds `e` to the errors reported together.
pub(crate) fn push(errors: &mut Option<syn::Error>, e: syn::Error) {
    match errors {
        Some(all) => all.combine(e),
        None => *errors = Some(e),
    }
}

impl Attrs {
    fn parse_key(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let path = &meta.path;
        let Some(key) = path.get_ident().map(|i| i.to_string()) else {
            return Err(unknown(meta));
        };
        match key.as_str() {
            "name" => set(
                &mut self.name,
                str_value(meta, "name = \"sync_emails\"")?,
                meta,
            ),
            "schedule" => set(
                &mut self.schedule,
                str_value(meta, "schedule = \"0 0 * * *\"")?,
                meta,
            ),
            "timezone" => set(
                &mut self.timezone,
                str_value(meta, "timezone = \"Europe/Paris\"")?,
                meta,
            ),
            "interval_minutes" => set(
                &mut self.interval_minutes,
                int_value(meta, "interval_minutes = 15")?,
                meta,
            ),
            "max_instances" => set(
                &mut self.max_instances,
                int_value(meta, "max_instances = 1")?,
                meta,
            ),
            "max_retries" => set(
                &mut self.max_retries,
                int_value(meta, "max_retries = 3")?,
                meta,
            ),
            "retry_delay" => set(
                &mut self.retry_delay,
                str_value(meta, "retry_delay = \"5m\"")?,
                meta,
            ),
            "timeout" => set(
                &mut self.timeout,
                str_value(meta, "timeout = \"30m\"")?,
                meta,
            ),
            "priority" => set(&mut self.priority, int_value(meta, "priority = 1")?, meta),
            "queue" => set(
                &mut self.queue,
                str_value(meta, "queue = \"emails\"")?,
                meta,
            ),
            "on_failure" => set(&mut self.on_failure, path_value(meta)?, meta),
            "misfire" => set(
                &mut self.misfire,
                str_value(meta, "misfire = \"catch_up\"")?,
                meta,
            ),
            "max_catch_up" => set(
                &mut self.max_catch_up,
                int_value(meta, "max_catch_up = 10")?,
                meta,
            ),
            "misfire_grace" => set(
                &mut self.misfire_grace,
                str_value(meta, "misfire_grace = \"30s\"")?,
                meta,
            ),
            "overlap" => set(
                &mut self.overlap,
                str_value(meta, "overlap = \"queue\"")?,
                meta,
            ),
            "dst" => set(&mut self.dst, str_value(meta, "dst = \"skip\"")?, meta),
            _ => Err(unknown(meta)),
        }
    }
}

fn unknown(meta: &ParseNestedMeta<'_>) -> syn::Error {
    let key = quote::ToTokens::to_token_stream(&meta.path)
        .to_string()
        .replace(' ', "");
    meta.error(format!(
        "unknown key `{key}`; #[kairos::task] accepts: {}",
        KEYS.join(", ")
    ))
}

fn set<T>(slot: &mut Option<T>, value: T, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if slot.is_some() {
        let key = meta
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        return Err(syn::Error::new_spanned(
            &meta.path,
            format!("duplicate key `{key}`; give each key once"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// The value after `=`, or an error saying the key needs one.
fn value_input<'a>(
    meta: &'a ParseNestedMeta<'_>,
    example: &str,
) -> syn::Result<syn::parse::ParseStream<'a>> {
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(format!("expected a value: write `{example}`")));
    }
    meta.value()
}

fn str_value(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<LitStr> {
    let input = value_input(meta, example)?;
    let expr: syn::Expr = input.parse()?;
    match &expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        _ => Err(syn::Error::new_spanned(
            expr,
            format!("expected a string literal: write `{example}`"),
        )),
    }
}

fn int_value(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<Int> {
    let input = value_input(meta, example)?;
    let expr: syn::Expr = input.parse()?;
    let bad = |expr: &syn::Expr| {
        syn::Error::new_spanned(
            expr,
            format!("expected an integer literal: write `{example}`"),
        )
    };
    let span = syn::spanned::Spanned::span(&expr);
    match &expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: Lit::Int(lit), ..
        }) => Ok(Int {
            lit: lit.clone(),
            negative: false,
            span,
        }),
        syn::Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            expr: inner,
            ..
        }) => match &**inner {
            syn::Expr::Lit(syn::ExprLit {
                lit: Lit::Int(lit), ..
            }) => Ok(Int {
                lit: lit.clone(),
                negative: true,
                span,
            }),
            _ => Err(bad(&expr)),
        },
        _ => Err(bad(&expr)),
    }
}

fn path_value(meta: &ParseNestedMeta<'_>) -> syn::Result<Path> {
    let example = "on_failure = notify_admin";
    let input = value_input(meta, example)?;
    let expr: syn::Expr = input.parse()?;
    match expr {
        syn::Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Ok(p.path),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected the path of an `async fn(kairos::FailedRun)`: write `{example}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn ok(args: TokenStream) -> Attrs {
        match parse(args) {
            (a, None) => a,
            (_, Some(e)) => panic!("{e}"),
        }
    }

    fn err(args: TokenStream) -> String {
        parse(args).1.unwrap().to_string()
    }

    #[test]
    fn a_bare_string_is_taken_for_the_name_and_the_other_keys_still_parse() {
        let (attrs, e) = parse(quote!("sync", max_retries = 3, on_failure = f::<1, 2>, 5));
        let e: Vec<String> = e.unwrap().into_iter().map(|e| e.to_string()).collect();
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            e[0],
            "expected `key = value`: to name the task, write `name = \"sync\"`"
        );
        assert!(e[1].starts_with("expected `key = value`, not a bare literal; "));
        assert_eq!(attrs.max_retries.unwrap().lit.base10_digits(), "3");
        assert!(attrs.on_failure.is_some());
    }

    #[test]
    fn parses_every_key() {
        let a = ok(quote!(
            name = "n",
            schedule = "0 0 * * *",
            timezone = "UTC",
            interval_minutes = 5,
            max_instances = 2,
            max_retries = 3,
            retry_delay = "5m",
            timeout = "1h",
            priority = -4,
            queue = "q",
            on_failure = crate::hooks::notify,
            misfire = "catch_up",
            max_catch_up = 4,
            misfire_grace = "30s",
            overlap = "queue",
            dst = "both",
        ));
        assert_eq!(a.name.unwrap().value(), "n");
        assert_eq!(a.schedule.unwrap().value(), "0 0 * * *");
        assert_eq!(a.timezone.unwrap().value(), "UTC");
        assert_eq!(a.interval_minutes.unwrap().lit.base10_digits(), "5");
        assert_eq!(a.max_instances.unwrap().lit.base10_digits(), "2");
        assert_eq!(a.max_retries.unwrap().lit.base10_digits(), "3");
        assert_eq!(a.retry_delay.unwrap().value(), "5m");
        assert_eq!(a.timeout.unwrap().value(), "1h");
        let p = a.priority.unwrap();
        assert!(p.negative);
        assert_eq!(p.lit.base10_digits(), "4");
        assert_eq!(a.queue.unwrap().value(), "q");
        assert_eq!(a.on_failure.unwrap().segments.len(), 3);
        assert_eq!(a.misfire.unwrap().value(), "catch_up");
        assert_eq!(a.max_catch_up.unwrap().lit.base10_digits(), "4");
        assert_eq!(a.misfire_grace.unwrap().value(), "30s");
        assert_eq!(a.overlap.unwrap().value(), "queue");
        assert_eq!(a.dst.unwrap().value(), "both");
    }

    #[test]
    fn empty_is_all_defaults() {
        let a = ok(TokenStream::new());
        assert!(a.name.is_none() && a.schedule.is_none() && a.on_failure.is_none());
    }

    #[test]
    fn rejects_shape_errors() {
        assert!(
            err(quote!(nmae = "x"))
                .starts_with("unknown key `nmae`; #[kairos::task] accepts: name, schedule,")
        );
        assert_eq!(
            err(quote!(name = "a", name = "b")),
            "duplicate key `name`; give each key once"
        );
        assert_eq!(
            err(quote!(interval_minutes = "15")),
            "expected an integer literal: write `interval_minutes = 15`"
        );
        assert_eq!(
            err(quote!(schedule = 5)),
            "expected a string literal: write `schedule = \"0 0 * * *\"`"
        );
        assert_eq!(
            err(quote!(on_failure = "notify")),
            "expected the path of an `async fn(kairos::FailedRun)`: write `on_failure = notify_admin`"
        );
        assert_eq!(
            err(quote!(misfire = run_once)),
            "expected a string literal: write `misfire = \"catch_up\"`"
        );
        assert_eq!(
            err(quote!(max_catch_up = "3")),
            "expected an integer literal: write `max_catch_up = 10`"
        );
        assert_eq!(
            err(quote!(timeout)),
            "expected a value: write `timeout = \"30m\"`"
        );
    }

    #[test]
    fn reports_all_errors_together() {
        let (a, e) = parse(quote!(bogus = 1, queue = 2, name = "ok"));
        assert_eq!(e.unwrap().into_iter().count(), 2);
        assert_eq!(a.name.unwrap().value(), "ok", "good keys are kept");
    }
}
