//! Descriptions of a checked schema for other languages, written by `echoc export`:
//! [`proto`] writes `.proto` files (one per package) that protoc accepts, [`json`] a versioned
//! JSON descriptor of the whole model for SDK generators. Both are specified in
//! `docs/descriptor.md`.

pub mod json;
pub mod proto;
