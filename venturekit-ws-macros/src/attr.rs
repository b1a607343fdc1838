//! The argument grammar of `#[ws_action]`: `"name"` then optional `, public`.

use proc_macro2::{Span, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::{Ident, LitStr, Token};

/// Parsed `#[ws_action(...)]` arguments.
pub(crate) struct ActionArgs {
    pub(crate) name: LitStr,
    pub(crate) public: bool,
}

const USAGE: &str = "write `#[ws_action(\"name\")]` or `#[ws_action(\"name\", public)]`";

pub(crate) fn parse(args: TokenStream) -> syn::Result<ActionArgs> {
    if args.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("`#[ws_action]` needs the action name: {USAGE}"),
        ));
    }
    (|input: ParseStream<'_>| parse_args(input)).parse2(args)
}

fn parse_args(input: ParseStream<'_>) -> syn::Result<ActionArgs> {
    let name = if input.peek(LitStr) {
        input.parse::<LitStr>()?
    } else {
        let found: proc_macro2::TokenTree = input.parse()?;
        return Err(syn::Error::new_spanned(
            found,
            format!("expected the action name as a string literal: {USAGE}"),
        ));
    };
    let mut public: Option<Ident> = None;
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    while !input.is_empty() {
        input.parse::<Token![,]>()?;
        if input.is_empty() {
            break;
        }
        let key: Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("expected an option such as `public`: {USAGE}"),
            )
        })?;
        if input.peek(Token![=]) {
            let eq: Token![=] = input.parse()?;
            let _value: syn::Expr = input.parse()?;
            push(syn::Error::new(
                eq.span,
                format!("`#[ws_action]` options take no value: write `{key}` alone"),
            ));
            continue;
        }
        if key == "public" {
            if public.is_some() {
                push(syn::Error::new(
                    key.span(),
                    "duplicate `public` option in `#[ws_action]`",
                ));
            }
            public = Some(key);
        } else {
            push(syn::Error::new(
                key.span(),
                format!("unknown `#[ws_action]` option `{key}`; the only option is `public`"),
            ));
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(ActionArgs {
            name,
            public: public.is_some(),
        }),
    }
}
