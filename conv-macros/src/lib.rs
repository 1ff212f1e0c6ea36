//! The `conv!` and `conv_file!` proc macros of convgen (work in progress, issue 4).
//!
//! They will parse the DSL with the same front end as the command line
//! ([`conv_dsl::compile_tokens`]), report its diagnostics as compile errors on the exact tokens, and
//! emit specialised Rust from the shared loop IR ([`conv_dsl::lower`]). Until then this crate exports
//! nothing; it exists so that the workspace has its final shape.
#![deny(missing_docs)]
