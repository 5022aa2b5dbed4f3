//! The `#[function]` attribute of `cloudfn-sdk`: turns one Rust function into the
//! `handler` export of the `cloud-function` world. Only the glue lives here; the
//! JSON and error mapping is ordinary code in `cloudfn_sdk::__private`.

use proc_macro::TokenStream;
use quote::quote;
use syn::{ItemFn, parse_macro_input};

/// Exports the annotated function as this component's cloud function.
///
/// The function takes `(event: E, ctx: &WxContext)` where `E: DeserializeOwned`
/// and returns `Result<R, cloudfn_sdk::Error>` where `R: Serialize`.
#[proc_macro_attribute]
pub fn function(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[cloudfn_sdk::function] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let func = parse_macro_input!(item as ItemFn);
    let name = &func.sig.ident;
    if func.sig.inputs.len() != 2 {
        return syn::Error::new_spanned(
            &func.sig,
            "a cloud function takes two arguments: (event: E, ctx: &WxContext)",
        )
        .to_compile_error()
        .into();
    }
    quote! {
        #func

        #[doc(hidden)]
        struct __CloudfnHandler;

        impl ::cloudfn_sdk::__private::Guest for __CloudfnHandler {
            fn handle(
                event: ::std::string::String,
                context: ::cloudfn_sdk::__private::RawContext,
            ) -> ::std::result::Result<::std::string::String, ::cloudfn_sdk::__private::FunctionError> {
                ::cloudfn_sdk::__private::run(event, context, #name)
            }
        }

        ::cloudfn_sdk::__private::export!(__CloudfnHandler with_types_in ::cloudfn_sdk::__private::bindings);
    }
    .into()
}
