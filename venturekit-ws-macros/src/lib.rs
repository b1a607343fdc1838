//! Procedural macros for [venturekit-ws](https://docs.rs/venturekit-ws): `#[ws_action]`
//! and `actions![...]`. Use them through the `venturekit_ws` crate, which documents them
//! in full.
//!
//! This file is a switchboard: it parses, calls `expand`, and turns errors into
//! `compile_error!` while still emitting the user's item.

mod actions;
mod attr;
mod check;
mod expand;

use proc_macro::TokenStream;

/// The hidden type `#[ws_action]` generates for function `ident`, and that `actions![...]`
/// names for a snake_case path segment.
pub(crate) fn hidden_ident(ident: &proc_macro2::Ident) -> proc_macro2::Ident {
    quote::format_ident!("__vk_action_{}", ident)
}

/// Marks an `async fn` as a WebSocket action: `#[ws_action("name")]` or
/// `#[ws_action("name", public)]`.
#[proc_macro_attribute]
pub fn ws_action(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::ws_action(args.into(), item.into()).into()
}

/// Builds the list of actions to register: `actions![send, ping, admin::kick]`.
/// Two actions with the same name are a compile-time error.
#[proc_macro]
pub fn actions(input: TokenStream) -> TokenStream {
    match actions::expand(input.into()) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}
