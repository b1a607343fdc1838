//! Validation of the action name and of the annotated function's signature.
//! Every error is spanned on the offending token and says how to fix it.

use syn::{FnArg, ItemFn, LitStr, Type};

/// Route keys and built-in actions; keep in sync with `venturekit_ws::action::RESERVED_NAMES`.
const RESERVED: &[(&str, &str)] = &[
    (
        "$connect",
        "it is an API Gateway route key handled by the framework",
    ),
    (
        "$disconnect",
        "it is an API Gateway route key handled by the framework",
    ),
    (
        "$default",
        "it is an API Gateway route key handled by the framework",
    ),
    ("auth", "it is the built-in authentication action"),
    (
        "ping",
        "it is the built-in keep-alive action (it replies `pong`)",
    ),
];

pub(crate) fn name(name: &LitStr) -> syn::Result<()> {
    let value = name.value();
    if value.trim().is_empty() {
        return Err(syn::Error::new(
            name.span(),
            "the action name must not be empty: clients select the action by it",
        ));
    }
    if value.starts_with("vk:") {
        return Err(syn::Error::new(
            name.span(),
            format!(
                "the action name `{value}` starts with `vk:`, the prefix reserved for the framework's own actions; choose another name"
            ),
        ));
    }
    if let Some((_, why)) = RESERVED.iter().find(|(r, _)| *r == value) {
        return Err(syn::Error::new(
            name.span(),
            format!("the action name `{value}` is reserved: {why}; choose another name"),
        ));
    }
    Ok(())
}

fn add(errors: &mut Option<syn::Error>, e: syn::Error) {
    match errors {
        Some(all) => all.combine(e),
        None => *errors = Some(e),
    }
}

pub(crate) fn signature(f: &ItemFn) -> syn::Result<()> {
    let sig = &f.sig;
    let mut errors = None;
    if sig.asyncness.is_none() {
        add(
            &mut errors,
            syn::Error::new_spanned(
                sig.fn_token,
                "`#[ws_action]` requires an `async fn`: write `async fn`",
            ),
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        add(
            &mut errors,
            syn::Error::new_spanned(unsafety, "`#[ws_action]` handlers cannot be `unsafe`"),
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        add(
            &mut errors,
            syn::Error::new_spanned(
                &sig.generics,
                "`#[ws_action]` handlers cannot be generic: the dispatcher needs one concrete message type",
            ),
        );
    }
    let typed: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(pat) => Some(pat),
            FnArg::Receiver(receiver) => {
                add(
                    &mut errors,
                    syn::Error::new_spanned(
                        receiver,
                        "`#[ws_action]` must be on a free function: `self` is not allowed",
                    ),
                );
                None
            }
        })
        .collect();
    for pat in &typed {
        if let Type::ImplTrait(_) = &*pat.ty {
            add(
                &mut errors,
                syn::Error::new_spanned(
                    &pat.ty,
                    "`#[ws_action]` argument types must be concrete, not `impl Trait`",
                ),
            );
        }
    }
    // After `ctx`: `State<T>` extractors, then at most one message, last.
    let rest = typed.iter().skip(1);
    let mut message_seen: Option<&syn::PatType> = None;
    for pat in rest {
        if is_extractor(&pat.ty) {
            if let Some(message) = message_seen {
                add(
                    &mut errors,
                    syn::Error::new_spanned(
                        message,
                        "the message argument must come last: `ctx: Ctx`, then `State<T>` arguments, then the message",
                    ),
                );
                message_seen = None;
            }
        } else if message_seen.is_some() {
            add(
                &mut errors,
                syn::Error::new_spanned(
                    pat,
                    "`#[ws_action]` handlers take one message argument: `ctx: Ctx`, then `State<T>` arguments, then the message",
                ),
            );
        } else {
            message_seen = Some(pat);
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether an argument type is an extractor (`State<T>`, by its last path segment) rather
/// than the message.
pub(crate) fn is_extractor(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "State"),
        _ => false,
    }
}
