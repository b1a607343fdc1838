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
    let private = quote!(::venturekit_ws::__private);

    let mut errors: Option<syn::Error> = None;
    let mut asserts = Vec::new();
    for (i, later) in paths.iter().enumerate() {
        for earlier in &paths[..i] {
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
                        <#earlier as #private::Action>::NAME,
                        <#later as #private::Action>::NAME,
                    ),
                    #message
                );
            });
        }
    }
    if let Some(e) = errors {
        return Err(e);
    }
    let defs = paths
        .iter()
        .map(|p| quote_spanned!(p.span()=> #private::ActionDef::of::<#p>()));
    Ok(quote! {
        {
            #(#asserts)*
            #private::Vec::<#private::ActionDef>::from([#(#defs),*])
        }
    })
}

fn show(path: &Path) -> String {
    quote!(#path).to_string().replace(' ', "")
}
