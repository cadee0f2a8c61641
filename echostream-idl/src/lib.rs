//! The `.echo` schema language: parsing, name resolution, semantic checks, diagnostics and
//! formatting. It knows nothing of Rust code generation or the network.
