//! Code generation: the user's function unchanged, plus a hidden reader of the run's
//! params shared by the handler (which then calls the function and converts its return
//! value) and the params check, one schema fn per parameter, an `on_failure` wrapper,
//! and the `inventory::submit!` of the task's `TaskDef`.
//!
//! Generated code names only `::kairos::...` paths, so users need no other crate, and
//! wraps its items in `const _: () = { ... };` so two tasks in one module never clash.
//! The work (reading params, converting results) lives in `kairos::__private`, not here.

use std::time::Duration;

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, ReturnType};

use crate::valid::{Param, Task};

/// The user's function followed by the task's registration.
pub(crate) fn expand(task: &Task, func: &ItemFn) -> TokenStream {
    let private = quote!(::kairos::__private);
    let fn_ident = &func.sig.ident;

    let mut names = Vec::new();
    let mut reads = Vec::new();
    let mut unwraps = Vec::new();
    let mut call_args = Vec::new();
    let mut schema_fns = Vec::new();
    let mut param_defs = Vec::new();
    for (i, p) in task.params.iter().enumerate() {
        match p {
            Param::Context { by_ref: false } => call_args.push(quote!(__ctx.clone())),
            Param::Context { by_ref: true } => call_args.push(quote!(&__ctx)),
            Param::Named {
                ident,
                ty,
                type_name,
            } => {
                let var = format_ident!("__kairos_arg{}", i);
                let name = ident.to_string();
                names.push(name.clone());
                reads.push(quote_spanned! {ty.span()=>
                    let #var = #private::Param::<#ty>::new()
                        .take(&mut __params, #name, #type_name);
                });
                unwraps.push(quote! {
                    let ::core::option::Option::Some(#var) = #var else {
                        ::core::unreachable!("kairos: params were checked")
                    };
                });
                call_args.push(quote!(#var));

                let schema_fn = format_ident!("__kairos_schema{}", i);
                schema_fns.push(quote! {
                    fn #schema_fn() -> #private::serde_json::Value {
                        #[allow(unused_imports)]
                        use #private::{AnySchema as _, KnownSchema as _};
                        (&&#private::SchemaOf::<#ty>::new()).kairos_schema()
                    }
                });
                param_defs.push(quote! {
                    #private::ParamDef {
                        name: #name,
                        rust_type: #type_name,
                        required: {
                            #[allow(unused_imports)]
                            use #private::Required as _;
                            #private::ParamType::<#ty>::REQUIRED
                        },
                        schema: #schema_fn,
                    }
                });
            }
        }
    }

    // Spanned on the return type so a return value that is neither `Serialize` nor a
    // `Result` is reported there. See `kairos::__private` for how `kairos_kind` picks.
    let out_span = match &func.sig.output {
        ReturnType::Default => fn_ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let outcome = quote_spanned! {out_span=>
        #[allow(unused_imports)]
        use #private::{OtherKind as _, ResultKind as _, ValueKind as _};
        (&&&#private::Kind::of(&__out)).kairos_kind().outcome(__out)
    };
    let call = quote_spanned! {fn_ident.span()=>
        #private::handler(async move {
            let __out = #fn_ident(#(#call_args),*).await;
            #outcome
        })
    };

    // One reading of the params for both the run and the check at the door, so both give
    // the same verdict: the handler starts what it returns, the check drops it.
    let read = quote! {
        fn __kairos_read(
            __params: #private::serde_json::Value,
        ) -> ::core::result::Result<
            impl ::core::ops::FnOnce(
                #private::TaskContext,
            ) -> #private::BoxFuture<'static, #private::TaskOutcome>,
            #private::TaskError,
        > {
            #[allow(unused_imports)]
            use #private::TakeParam as _;
            let mut __params = #private::Params::new(__params, &[#(#names),*]);
            #(#reads)*
            __params.finish()?;
            #(#unwraps)*
            ::core::result::Result::Ok(move |__ctx: #private::TaskContext| #call)
        }

        fn __kairos_handler(
            __ctx: #private::TaskContext,
            __params: #private::serde_json::Value,
        ) -> #private::BoxFuture<'static, #private::TaskOutcome> {
            #private::start(__kairos_read(__params), __ctx)
        }

        fn __kairos_check(
            __params: &#private::serde_json::Value,
        ) -> ::core::result::Result<(), #private::TaskError> {
            #private::verdict(__kairos_read(::core::clone::Clone::clone(__params)))
        }

        #(#schema_fns)*
    };

    let (on_failure_fn, on_failure_field) = match &task.on_failure {
        Some(path) => {
            let hook = quote_spanned! {path.span()=>
                #private::failure_hook(#path(__run))
            };
            (
                quote! {
                    fn __kairos_on_failure(
                        __run: #private::FailedRun,
                    ) -> #private::BoxFuture<'static, ()> {
                        #hook
                    }
                },
                quote!(on_failure: ::core::option::Option::Some(__kairos_on_failure),),
            )
        }
        None => (TokenStream::new(), TokenStream::new()),
    };

    let some = |v: Option<TokenStream>, field: &str| {
        v.map(|v| {
            let field = format_ident!("{}", field);
            quote!(#field: ::core::option::Option::Some(#v),)
        })
    };
    // Exact, so that sub-millisecond durations (`"500us"`) are not rounded to zero.
    let variant = |ty: TokenStream, v: Option<&str>| {
        v.map(|v| {
            let v = format_ident!("{}", v);
            quote!(#private::#ty::#v)
        })
    };
    let duration = |d: Option<Duration>| {
        d.map(|d| {
            let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
            quote!(#private::Duration::new(#secs, #nanos))
        })
    };
    let fields = [
        some(task.schedule.as_ref().map(lit), "schedule"),
        some(task.timezone.as_ref().map(lit), "timezone"),
        some(
            task.interval_secs
                .map(|s| quote!(#private::Duration::from_secs(#s))),
            "interval",
        ),
        some(task.max_instances.map(lit), "max_instances"),
        some(task.max_retries.map(lit), "max_retries"),
        some(duration(task.retry_delay), "retry_delay"),
        some(duration(task.timeout), "timeout"),
        some(task.priority.map(lit), "priority"),
        some(task.queue.as_ref().map(lit), "queue"),
        some(variant(quote!(Misfire), task.misfire), "misfire"),
        some(task.max_catch_up.map(lit), "max_catch_up"),
        some(duration(task.misfire_grace), "misfire_grace"),
        some(variant(quote!(Overlap), task.overlap), "overlap"),
        some(variant(quote!(DstPolicy), task.dst), "dst"),
    ];
    let fields = fields.into_iter().flatten();

    let name = &task.name;
    let location = quote_spanned! {fn_ident.span()=>
        ::core::concat!(::core::file!(), ":", ::core::line!())
    };

    quote! {
        #func

        const _: () = {
            #read
            #on_failure_fn
            #private::inventory::submit! {
                #private::TaskDef {
                    #(#fields)*
                    #on_failure_field
                    params: ::core::option::Option::Some(&[#(#param_defs),*]),
                    check_params: ::core::option::Option::Some(__kairos_check),
                    ..#private::TaskDef::new(#name, __kairos_handler, #location)
                }
            }
        };
    }
}

fn lit<T: ToTokens>(v: T) -> TokenStream {
    v.into_token_stream()
}
