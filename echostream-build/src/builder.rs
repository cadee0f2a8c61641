//! [`Builder`]: what a build script configures, and `compile`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use echostream_idl::Compilation;

use crate::error::Error;
use crate::generate::{self, GeneratedFile};
use crate::service::Sides;

/// Configures code generation; made by [`configure()`](crate::configure).
///
/// ```no_run
/// // build.rs
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     echostream_build::configure()
///         .build_client(false)
///         .type_attribute(".chat.v1.Login", "#[derive(Eq)]")
///         .compile(&["schemas/chat.echo"], &["schemas"])?;
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    out_dir: Option<PathBuf>,
    sides: Sides,
    services: BTreeMap<String, ServiceSides>,
    pub(crate) prost: ProstSettings,
    cargo_directives: bool,
}

/// Per-service overrides of what is generated.
#[derive(Clone, Copy, Debug, Default)]
struct ServiceSides {
    server: Option<bool>,
    client: Option<bool>,
}

/// What is passed on to prost-build for message and enum types.
#[derive(Clone, Debug)]
pub(crate) struct ProstSettings {
    pub type_attributes: Vec<(String, String)>,
    pub message_attributes: Vec<(String, String)>,
    pub enum_attributes: Vec<(String, String)>,
    pub field_attributes: Vec<(String, String)>,
    pub boxed: Vec<String>,
    pub bytes: Vec<String>,
    pub btree_map: Vec<String>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            out_dir: None,
            sides: Sides {
                server: true,
                client: true,
            },
            services: BTreeMap::new(),
            prost: ProstSettings {
                type_attributes: Vec::new(),
                message_attributes: Vec::new(),
                enum_attributes: Vec::new(),
                field_attributes: Vec::new(),
                boxed: Vec::new(),
                bytes: vec![".".to_string()],
                btree_map: Vec::new(),
            },
            cargo_directives: true,
        }
    }
}

/// A service name as the builder takes it: fully qualified, with or without a leading dot.
fn service_key(name: &str) -> String {
    name.strip_prefix('.').unwrap_or(name).to_string()
}

impl Builder {
    /// Where generated files are written. Default: `OUT_DIR`, set by cargo for build scripts.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Whether to generate, for every service, the handler trait and its server wrapper
    /// (`ChatService`, `ChatServiceServer`). Default `true`.
    pub fn build_server(mut self, enabled: bool) -> Self {
        self.sides.server = enabled;
        self
    }

    /// Whether to generate, for every service, its client (`ChatServiceClient`). Default `true`.
    pub fn build_client(mut self, enabled: bool) -> Self {
        self.sides.client = enabled;
        self
    }

    /// Whether to generate the trait and server of one service, by fully-qualified name
    /// (`chat.v1.ChatService`), overriding [`build_server`](Self::build_server). Naming a
    /// service the schemas do not have is an error.
    pub fn service_server(mut self, service: &str, enabled: bool) -> Self {
        self.services
            .entry(service_key(service))
            .or_default()
            .server = Some(enabled);
        self
    }

    /// Whether to generate the client of one service, by fully-qualified name, overriding
    /// [`build_client`](Self::build_client). Naming a service the schemas do not have is an
    /// error.
    pub fn service_client(mut self, service: &str, enabled: bool) -> Self {
        self.services
            .entry(service_key(service))
            .or_default()
            .client = Some(enabled);
        self
    }

    /// Adds an attribute to the messages and enums matching `path`, as prost-build's
    /// `Config::type_attribute` (`"."` for all, `".chat.v1"` for a package, `".chat.v1.Login"`
    /// for one type). Applied to oneof enums too.
    pub fn type_attribute(mut self, path: impl Into<String>, attribute: impl Into<String>) -> Self {
        self.prost
            .type_attributes
            .push((path.into(), attribute.into()));
        self
    }

    /// Adds an attribute to the messages matching `path` (prost-build's
    /// `Config::message_attribute`).
    pub fn message_attribute(
        mut self,
        path: impl Into<String>,
        attribute: impl Into<String>,
    ) -> Self {
        self.prost
            .message_attributes
            .push((path.into(), attribute.into()));
        self
    }

    /// Adds an attribute to the enums matching `path`, oneof enums included (prost-build's
    /// `Config::enum_attribute`).
    pub fn enum_attribute(mut self, path: impl Into<String>, attribute: impl Into<String>) -> Self {
        self.prost
            .enum_attributes
            .push((path.into(), attribute.into()));
        self
    }

    /// Adds an attribute to the fields matching `path`, such as `".chat.v1.Login.token"`
    /// (prost-build's `Config::field_attribute`).
    pub fn field_attribute(
        mut self,
        path: impl Into<String>,
        attribute: impl Into<String>,
    ) -> Self {
        self.prost
            .field_attributes
            .push((path.into(), attribute.into()));
        self
    }

    /// Boxes the message fields matching `path` (prost-build's `Config::boxed`), for large or
    /// recursive messages.
    pub fn boxed(mut self, path: impl Into<String>) -> Self {
        self.prost.boxed.push(path.into());
        self
    }

    /// The `bytes` fields generated as `Bytes` rather than `Vec<u8>`, as prost-build paths.
    ///
    /// Default: all (`["."]`). The runtime hands every message over as `Bytes`, and a message
    /// decoded from `Bytes` shares that buffer for its `Bytes` fields instead of copying them:
    /// a video frame's payload is never copied on its way from the network to the handler.
    /// `Bytes` derefs to `&[u8]` and converts from `Vec<u8>` with `.into()`. Pass an empty list
    /// for `Vec<u8>` everywhere.
    pub fn bytes<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.prost.bytes = paths.into_iter().map(Into::into).collect();
        self
    }

    /// The `map` fields generated as `BTreeMap` rather than `HashMap` (prost-build's
    /// `Config::btree_map`), e.g. `["."]` for deterministic iteration order everywhere.
    pub fn btree_map<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.prost.btree_map = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Whether [`compile`](Self::compile) prints cargo's `rerun-if-changed` lines for every
    /// schema and import, and the schemas' warnings as `cargo:warning`. Default `true`; turn it
    /// off outside build scripts.
    pub fn emit_cargo_directives(mut self, enabled: bool) -> Self {
        self.cargo_directives = enabled;
        self
    }

    /// What is generated for the service `full_name`.
    pub(crate) fn sides(&self, full_name: &str) -> Sides {
        let overrides = self.services.get(full_name).copied().unwrap_or_default();
        Sides {
            server: overrides.server.unwrap_or(self.sides.server),
            client: overrides.client.unwrap_or(self.sides.client),
        }
    }

    /// The services named by per-service settings.
    pub(crate) fn configured_services(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// Reads `schemas` and their imports (looked up in `include_dirs`, in order; with none, in
    /// the schemas' directories), checks them, and writes the generated code to the output
    /// directory: one `<package>.rs` per package and `echostream-include.rs`, the module tree of
    /// all packages (see `echostream_runtime::include_schema!` and `include_schemas!`). Files
    /// whose content is unchanged are not rewritten, so cargo does not rebuild for nothing.
    ///
    /// In a build script, it also prints `cargo:rerun-if-changed` for every schema and import
    /// read, and the schemas' warnings as `cargo:warning` (see
    /// [`emit_cargo_directives`](Self::emit_cargo_directives)).
    ///
    /// # Errors
    /// [`Error::Schema`] with every diagnostic (file:line:col, source line) when a schema has
    /// errors or names that would clash in generated code; [`Error::Config`] when a setting
    /// names a service the schemas do not have; [`Error::NoOutDir`] and [`Error::Write`] when
    /// the files cannot be written.
    pub fn compile(
        &self,
        schemas: &[impl AsRef<Path>],
        include_dirs: &[impl AsRef<Path>],
    ) -> Result<(), Error> {
        let compilation = echostream_idl::compile(schemas, include_dirs);
        if self.cargo_directives {
            for line in cargo_directives(&compilation, schemas, include_dirs) {
                println!("{line}");
            }
        }
        let files = self.generate(&compilation)?;
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or(Error::NoOutDir)?,
        };
        generate::write_files(&out_dir, &files)
    }

    /// The files [`compile`](Self::compile) writes, for an already checked compilation, in
    /// memory: what `echoc gen` writes, byte for byte.
    ///
    /// # Errors
    /// As [`compile`](Self::compile), except for writing.
    pub fn generate(&self, compilation: &Compilation) -> Result<Vec<GeneratedFile>, Error> {
        generate::generate(self, compilation)
    }
}

/// `cargo:rerun-if-changed` for every file read (and, when some could not be found, the include
/// directories, so that adding the missing file reruns the build), and a `cargo:warning` per
/// warning.
fn cargo_directives(
    compilation: &Compilation,
    schemas: &[impl AsRef<Path>],
    include_dirs: &[impl AsRef<Path>],
) -> Vec<String> {
    let mut paths: Vec<PathBuf> = schemas.iter().map(|p| p.as_ref().to_path_buf()).collect();
    for file in compilation.sources.files() {
        let path = file.path().to_path_buf();
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    if compilation.has_errors() {
        paths.extend(include_dirs.iter().map(|d| d.as_ref().to_path_buf()));
    }
    let mut lines: Vec<String> = paths
        .iter()
        .map(|p| format!("cargo:rerun-if-changed={}", p.display()))
        .collect();
    for diagnostic in compilation.diagnostics.iter().filter(|d| !d.is_error()) {
        lines.push(format!(
            "cargo:warning={}",
            diagnostic.headline(&compilation.sources)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use echostream_idl::{MemoryFs, compile_with};

    #[test]
    fn every_schema_and_import_reruns_the_build_and_warnings_are_shown() {
        let mut fs = MemoryFs::new();
        fs.insert(
            "s/chat.echo",
            "package chat;\nimport \"common.echo\";\nmessage M { common.C c = 1; }\n",
        );
        fs.insert(
            "inc/common.echo",
            "package common;\nmessage C { int32 badName = 1; }\n",
        );
        let c = compile_with(&fs, &["s/chat.echo"], &["inc"]);
        assert!(!c.has_errors());
        assert_eq!(
            cargo_directives(&c, &["s/chat.echo"], &["inc"]),
            [
                "cargo:rerun-if-changed=s/chat.echo",
                "cargo:rerun-if-changed=inc/common.echo",
                "cargo:warning=inc/common.echo:2:19: warning: field name `badName` should be snake_case",
            ]
        );
    }

    #[test]
    fn a_missing_import_reruns_the_build_when_include_directories_change() {
        let mut fs = MemoryFs::new();
        fs.insert("chat.echo", "package chat;\nimport \"gone.echo\";\n");
        let c = compile_with(&fs, &["chat.echo"], &["inc"]);
        assert!(c.has_errors());
        assert_eq!(
            cargo_directives(&c, &["chat.echo"], &["inc"]),
            [
                "cargo:rerun-if-changed=chat.echo",
                "cargo:rerun-if-changed=inc",
            ]
        );
    }

    #[test]
    fn per_service_settings_override_the_global_ones() {
        let b = Builder::default()
            .build_client(false)
            .service_client(".a.S", true)
            .service_server("a.T", false);
        let sides = |n| {
            let s = b.sides(n);
            (s.server, s.client)
        };
        assert_eq!(sides("a.S"), (true, true));
        assert_eq!(sides("a.T"), (false, false));
        assert_eq!(sides("a.U"), (true, false));
        assert_eq!(b.configured_services().collect::<Vec<_>>(), ["a.S", "a.T"]);
    }
}
