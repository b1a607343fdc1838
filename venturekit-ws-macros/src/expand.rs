//! Code generation for `#[ws_action]`: the user's function unchanged, a hidden type named
//! `__vk_action_<fn>` (so it never collides with a module or type of the function's name),
//! and an `Action` impl that adapts the function. The function is only reachable through
//! that type, which only `actions![...]` names: an action defined but never registered
//! keeps rustc's `dead_code` warning.

use crate::{attr, check};
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType};

pub(crate) fn ws_action(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let err = syn::Error::new(
                Span::call_site(),
                "`#[ws_action]` can only be applied to an `async fn`",
            );
            return with_item(err, item);
        }
    };
    let mut errors: Option<syn::Error> = None;
    let mut add = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    let args = match attr::parse(args) {
        Ok(args) => {
            if let Err(e) = check::name(&args.name) {
                add(e);
            }
            Some(args)
        }
        Err(e) => {
            add(e);
            None
        }
    };
    if let Err(e) = check::signature(&func) {
        add(e);
    }
    match (errors, args) {
        (None, Some(args)) => generate(&func, &args),
        (Some(err), _) => with_item(err, item),
        (None, None) => item,
    }
}

/// On error, still emit the user's item so the IDE and other code keep working.
fn with_item(err: syn::Error, item: TokenStream) -> TokenStream {
    let err = err.to_compile_error();
    quote! { #err #item }
}

fn generate(func: &ItemFn, args: &attr::ActionArgs) -> TokenStream {
    let vis = &func.vis;
    let ident = &func.sig.ident;
    let hidden = crate::hidden_ident(ident);
    let name = &args.name;
    let public = args.public;
    let private = quote!(::venturekit_ws::__private);

    let typed: Vec<&syn::PatType> = func
        .sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => Some(t),
            FnArg::Receiver(_) => None,
        })
        .collect();

    // The context argument is converted through `CtxArg`, spanned on the user's type, so
    // a wrong type gets one error pointing at it. Extractors (`State<T>`) go through
    // `FromCtx`; the message, if any, is the last other argument.
    let mut extract = Vec::new();
    let mut call_args = Vec::new();
    let mut required = Vec::new();
    let mut message_ty = quote!(#private::IgnoredAny);
    let mut takes_message = false;
    for (index, arg) in typed.iter().enumerate() {
        let ty = &arg.ty;
        if index == 0 {
            call_args
                .push(quote_spanned!(ty.span()=> <#ty as #private::CtxArg>::from_ctx(__vk_ctx)));
        } else if check::is_extractor(ty) {
            let var = quote::format_ident!("__vk_arg{}", index);
            extract.push(quote_spanned! {ty.span()=>
                let #var = match <#ty as #private::FromCtx>::from_ctx(&__vk_ctx) {
                    ::core::result::Result::Ok(value) => value,
                    ::core::result::Result::Err(error) => {
                        return #private::Box::pin(async move {
                            ::core::result::Result::Err(error)
                        });
                    }
                };
            });
            required.push(quote_spanned!(ty.span()=> <#ty as #private::FromCtx>::required()));
            call_args.push(quote!(#var));
        } else {
            message_ty = quote_spanned!(ty.span()=> #ty);
            takes_message = true;
            call_args.push(quote!(__vk_message));
        }
    }
    let reply_span = match &func.sig.output {
        ReturnType::Default => func.sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let reply = quote_spanned!(reply_span=> #private::reply(__vk_output));
    let roles = &args.roles;
    let scopes = &args.scopes;
    // The reply's schema: `()` replies nothing; `Result<T, E>` replies `T`.
    let reply_schema = match reply_type(&func.sig.output) {
        ReplyType::Nothing => quote!(#private::ReplySchema::Nothing),
        ReplyType::Value(ty) => quote! {
            match (&#private::Probe::<#ty>::new()).reply_schema(__vk_gen) {
                ::core::option::Option::Some(schema) => #private::ReplySchema::Value(schema),
                ::core::option::Option::None => #private::ReplySchema::Unknown,
            }
        },
        ReplyType::Unknown => quote!(#private::ReplySchema::Unknown),
    };
    let message_schema = if takes_message {
        quote!((&#private::Probe::<#message_ty>::new()).message_schema(__vk_gen))
    } else {
        quote!(::core::option::Option::None)
    };

    quote! {
        #func

        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #hidden {}

        const _: () = {
            #[automatically_derived]
            impl #private::Action for #hidden {
                const NAME: &'static str = #name;
                const PUBLIC: bool = #public;
                const ROLES: &'static [&'static str] = &[#(#roles),*];
                const SCOPES: &'static [&'static str] = &[#(#scopes),*];
                type Message = #message_ty;

                fn call(
                    __vk_ctx: #private::Ctx,
                    __vk_message: Self::Message,
                ) -> #private::ActionFuture {
                    let _ = (&__vk_ctx, &__vk_message);
                    #(#extract)*
                    #private::Box::pin(async move {
                        let __vk_output = #ident(#(#call_args),*).await;
                        #reply
                    })
                }

                fn required_state() -> #private::Vec<#private::StateKey> {
                    let mut __vk_required = #private::Vec::new();
                    #(__vk_required.extend(#required);)*
                    __vk_required
                }

                fn schemas(__vk_gen: &mut #private::SchemaGen) -> #private::Schemas {
                    #[allow(unused_imports)]
                    use #private::{ProbeFallback as _, ProbeSchema as _};
                    let _ = &__vk_gen;
                    let __vk_message = #message_schema;
                    let __vk_reply = #reply_schema;
                    #private::Schemas::recorded(__vk_message, #takes_message, __vk_reply)
                }
            }
        };
    }
}

/// What a handler's return type says about its reply.
enum ReplyType<'a> {
    /// `()` or no return type.
    Nothing,
    /// `Result<T, E>`: the reply is `T`.
    Value(&'a syn::Type),
    /// Anything else (an alias, say).
    Unknown,
}

fn reply_type(output: &ReturnType) -> ReplyType<'_> {
    let ty = match output {
        ReturnType::Default => return ReplyType::Nothing,
        ReturnType::Type(_, ty) => ty.as_ref(),
    };
    match ty {
        syn::Type::Tuple(tuple) if tuple.elems.is_empty() => ReplyType::Nothing,
        syn::Type::Path(path) => {
            let Some(last) = path.path.segments.last() else {
                return ReplyType::Unknown;
            };
            if last.ident != "Result" {
                return ReplyType::Unknown;
            }
            match &last.arguments {
                syn::PathArguments::AngleBracketed(args) => match args.args.first() {
                    Some(syn::GenericArgument::Type(ok)) => match ok {
                        syn::Type::Tuple(t) if t.elems.is_empty() => ReplyType::Nothing,
                        // `impl Trait` cannot be named outside the signature.
                        ok if quote!(#ok).to_string().contains("impl ") => ReplyType::Unknown,
                        ok => ReplyType::Value(ok),
                    },
                    _ => ReplyType::Unknown,
                },
                _ => ReplyType::Unknown,
            }
        }
        _ => ReplyType::Unknown,
    }
}
