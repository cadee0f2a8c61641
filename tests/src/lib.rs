//! Code generated from schemas by `build.rs`, as a user's crate includes it.
//!
//! Building this crate, with the workspace's `missing_docs` lint and clippy's `-D warnings`,
//! is the compile test of the code generated for every valid golden schema; the tests in
//! `tests/` use it to make two peers talk.

/// Every package of the golden schemas and of `schemas/`, in one module tree.
pub mod schemas {
    echostream_runtime::include_schemas!();
}

/// Packages included one at a time with `include_schema!`, in a tree mirroring their names, so
/// that `chat.v1`'s references to package `common` resolve.
pub mod mirrored {
    /// Package `common`.
    pub mod common {
        echostream_runtime::include_schema!("common");
    }
    /// Packages under `chat`.
    pub mod chat {
        /// Package `chat.v1`.
        pub mod v1 {
            echostream_runtime::include_schema!("chat.v1");
        }
    }
}

/// A package that refers to no other, included alone wherever it suits.
pub mod scalars {
    echostream_runtime::include_schema!("types.v1");
}
