//! `#[verdict]`: turns `fn decide(p: &Packet) -> Verdict` into the export a verdict module
//! needs, `verdict(len: i32) -> i32` (spec/wasm-verdict.md), so an author never writes the ABI.
//!
//! It reads only the function's name from the tokens (no syn: see Cargo.toml) and leaves the
//! type checking to rustc: the generated export passes the function to
//! `sluice_wasm_sdk::verdict::__run`, whose parameter is `fn(&Packet) -> Verdict`, so a wrong
//! signature is an ordinary type error pointing at the function.

use proc_macro::{Delimiter, Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};

/// Exports the function as the module's `verdict`. See `sluice_wasm_sdk::verdict`.
#[proc_macro_attribute]
pub fn verdict(attr: TokenStream, item: TokenStream) -> TokenStream {
    if let Some(t) = attr.into_iter().next() {
        return error(t.span(), "`#[verdict]` takes no arguments");
    }
    let Some(name) = fn_name(&item) else {
        return error(
            Span::call_site(),
            "`#[verdict]` goes on a function `fn decide(p: &Packet) -> Verdict`",
        );
    };
    // Only on wasm32: natively the function stays an ordinary one, testable with
    // `Packet::from_bytes`.
    let glue = format!(
        r#"
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[unsafe(export_name = "verdict")]
        pub extern "C" fn __sluice_verdict(len: i32) -> i32 {{
            ::sluice_wasm_sdk::verdict::__run(len, {name})
        }}"#
    );
    let mut out = item;
    out.extend(glue.parse::<TokenStream>().expect("generated tokens parse"));
    out
}

/// The identifier after the first top-level `fn`.
fn fn_name(item: &TokenStream) -> Option<Ident> {
    let mut tokens = item.clone().into_iter();
    while let Some(t) = tokens.next() {
        if matches!(&t, TokenTree::Ident(i) if i.to_string() == "fn") {
            return match tokens.next() {
                Some(TokenTree::Ident(name)) => Some(name),
                _ => None,
            };
        }
    }
    None
}

/// `compile_error!("message")` at `span`.
fn error(span: Span, message: &str) -> TokenStream {
    let mut lit = proc_macro::Literal::string(message);
    lit.set_span(span);
    let mut bang = Punct::new('!', Spacing::Alone);
    bang.set_span(span);
    let mut args = Group::new(Delimiter::Parenthesis, TokenTree::Literal(lit).into());
    args.set_span(span);
    [
        TokenTree::Ident(Ident::new("compile_error", span)),
        TokenTree::Punct(bang),
        TokenTree::Group(args),
        TokenTree::Punct(Punct::new(';', Spacing::Alone)),
    ]
    .into_iter()
    .collect()
}
