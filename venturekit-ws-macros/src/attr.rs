//! The argument grammar of `#[ws_action]`:
//!
//! ```text
//! #[ws_action("name")]
//! #[ws_action("name", public)]
//! #[ws_action("name", role = "admin")]            // or role = ["admin", "moderator"]: any one
//! #[ws_action("name", scope = "chat:write")]      // or scope = ["a", "b"]: all of them
//! ```

use proc_macro2::{Span, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, ExprArray, ExprLit, Ident, Lit, LitStr, Token};

/// Parsed `#[ws_action(...)]` arguments.
pub(crate) struct ActionArgs {
    pub(crate) name: LitStr,
    pub(crate) public: bool,
    pub(crate) roles: Vec<LitStr>,
    pub(crate) scopes: Vec<LitStr>,
}

const USAGE: &str = "write `#[ws_action(\"name\")]`, `#[ws_action(\"name\", public)]`, `#[ws_action(\"name\", role = \"admin\")]` or `#[ws_action(\"name\", scope = \"chat:write\")]`";

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
    let mut roles: Option<(Ident, Vec<LitStr>)> = None;
    let mut scopes: Option<(Ident, Vec<LitStr>)> = None;
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
        let value = if input.peek(Token![=]) {
            let eq: Token![=] = input.parse()?;
            Some((eq, input.parse::<Expr>()?))
        } else {
            None
        };
        match (key.to_string().as_str(), value) {
            ("public", None) => {
                if public.is_some() {
                    push(syn::Error::new(
                        key.span(),
                        "duplicate `public` option in `#[ws_action]`",
                    ));
                }
                public = Some(key);
            }
            ("public", Some((eq, _))) => push(syn::Error::new(
                eq.span,
                "`public` takes no value: write `public` alone",
            )),
            (kind @ ("role" | "scope"), None) => push(syn::Error::new(
                key.span(),
                format!(
                    "`{kind}` needs a value: write `{kind} = \"...\"` or `{kind} = [\"...\", \"...\"]`"
                ),
            )),
            (kind @ ("role" | "scope"), Some((_, expr))) => {
                let slot = if kind == "role" {
                    &mut roles
                } else {
                    &mut scopes
                };
                if slot.is_some() {
                    push(syn::Error::new(
                        key.span(),
                        format!(
                            "duplicate `{kind}` option in `#[ws_action]`: list several as `{kind} = [\"a\", \"b\"]`"
                        ),
                    ));
                    continue;
                }
                match strings(kind, &expr) {
                    Ok(list) => *slot = Some((key, list)),
                    Err(e) => push(e),
                }
            }
            (other, _) => push(syn::Error::new(
                key.span(),
                format!(
                    "unknown `#[ws_action]` option `{other}`; the options are `public`, `role = ...` and `scope = ...`"
                ),
            )),
        }
    }
    if let Some(public) = &public {
        for (kind, given) in [("role", &roles), ("scope", &scopes)] {
            if let Some((key, _)) = given {
                let mut e = syn::Error::new(
                    key.span(),
                    format!(
                        "`public` and `{kind}` cannot be combined: a public action runs without authentication, so there is no {kind} to check; remove one of them"
                    ),
                );
                e.combine(syn::Error::new(public.span(), "`public` given here"));
                push(e);
            }
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(ActionArgs {
            name,
            public: public.is_some(),
            roles: roles.map(|(_, l)| l).unwrap_or_default(),
            scopes: scopes.map(|(_, l)| l).unwrap_or_default(),
        }),
    }
}

/// `"a"` or `["a", "b"]`: non-empty strings, at least one.
fn strings(kind: &str, expr: &Expr) -> syn::Result<Vec<LitStr>> {
    let list: Vec<LitStr> = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => vec![s.clone()],
        Expr::Array(ExprArray { elems, .. }) => {
            if elems.is_empty() {
                return Err(syn::Error::new(
                    expr.span(),
                    format!("`{kind} = []` lists nothing: name at least one {kind}"),
                ));
            }
            let mut list = Vec::new();
            for elem in elems {
                match elem {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    }) => list.push(s.clone()),
                    other => {
                        return Err(syn::Error::new(
                            other.span(),
                            format!("expected a string literal in `{kind} = [...]`"),
                        ));
                    }
                }
            }
            list
        }
        other => {
            return Err(syn::Error::new(
                other.span(),
                format!(
                    "`{kind}` takes a string literal or an array of them: `{kind} = \"...\"` or `{kind} = [\"...\", \"...\"]`"
                ),
            ));
        }
    };
    for s in &list {
        if s.value().trim().is_empty() {
            return Err(syn::Error::new(
                s.span(),
                format!("an empty {kind} can never match: name the {kind}"),
            ));
        }
    }
    Ok(list)
}
