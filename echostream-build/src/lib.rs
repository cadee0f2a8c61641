//! Code generation for `.echo` schemas: message types through prost, service stubs for
//! `echostream-runtime`, and the `echoc` command-line tool.

pub mod cli;
