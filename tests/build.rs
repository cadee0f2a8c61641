//! Compiles every valid golden schema of the language (`echostream-idl/tests/valid`) and the
//! end-to-end schemas of `schemas/` in one run of `echostream_build`, as a user's build script
//! would: the crate then includes them all, so that building it (with the workspace lints and
//! clippy) is the compile test of the generated code of every golden schema.

use std::path::{Path, PathBuf};

const GOLDEN: &str = "../echostream-idl/tests/valid";
const SCHEMAS: &str = "schemas";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut roots = Vec::new();
    for dir in [GOLDEN, SCHEMAS] {
        collect(Path::new(dir), &mut roots)?;
        // A schema added to the directory reruns the build.
        println!("cargo:rerun-if-changed={dir}");
    }
    roots.sort();
    echostream_build::configure().compile(&roots, &[GOLDEN, SCHEMAS])?;
    Ok(())
}

/// The `.echo` files under `dir`.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "echo") {
            out.push(path);
        }
    }
    Ok(())
}
