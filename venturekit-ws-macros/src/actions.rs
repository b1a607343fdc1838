//! `actions![a, b, c]`: the explicit registration list, with duplicate names rejected at
//! compile time by `const` assertions over each pair of actions.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{LitStr, Path, Token};

pub(crate) fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let paths = Punctuated::<Path, Token![,]>::parse_terminated.parse2(input)?;
    let paths: Vec<Path> = paths.into_iter().collect();
    let resolved: Vec<Path> = paths.iter().map(action_type).collect();
    let private = quote!(::venturekit_ws::__private);

    let mut errors: Option<syn::Error> = None;
    let mut asserts = Vec::new();
    for (i, (later, later_ty)) in paths.iter().zip(&resolved).enumerate() {
        for (earlier, earlier_ty) in paths[..i].iter().zip(&resolved) {
            let (a, b) = (show(earlier), show(later));
            if a == b {
                let e = syn::Error::new_spanned(
                    later,
                    format!("`{b}` is listed twice in `actions![...]`; register each action once"),
                );
                match &mut errors {
                    Some(all) => all.combine(e),
                    None => errors = Some(e),
                }
                continue;
            }
            let message = LitStr::new(
                &format!(
                    "`{a}` and `{b}` are registered under the same action name; every action name must be unique"
                ),
                later.span(),
            );
            asserts.push(quote_spanned! {later.span()=>
                const _: () = ::core::assert!(
                    !#private::str_eq(
                        <#earlier_ty as #private::Action>::NAME,
                        <#later_ty as #private::Action>::NAME,
                    ),
                    #message
                );
            });
        }
    }
    if let Some(e) = errors {
        return Err(e);
    }
    let defs = resolved
        .iter()
        .map(|p| quote_spanned!(p.span()=> #private::ActionDef::of::<#p>()));
    Ok(quote! {
        {
            #(#asserts)*
            #private::Vec::<#private::ActionDef>::from([#(#defs),*])
        }
    })
}

/// The `Action` type a listed path names: for a `#[ws_action]` function (a snake_case last
/// segment) its hidden `__vk_action_<fn>` type; anything else (a hand-written `Action`
/// type, CamelCase by convention) as written.
fn action_type(path: &Path) -> Path {
    let mut path = path.clone();
    if let Some(last) = path.segments.last_mut() {
        let name = last.ident.to_string();
        if name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
            let mut ident = crate::hidden_ident(&last.ident);
            ident.set_span(last.ident.span());
            last.ident = ident;
        }
    }
    path
}

fn show(path: &Path) -> String {
    quote!(#path).to_string().replace(' ', "")
}
