//! `echoc gen` writes what the build script wrote into `OUT_DIR`, byte for byte.

use std::path::{Path, PathBuf};

use echostream_build::cli::{Cli, Output, run};

/// The `.echo` files under `dir`, as `build.rs` collects them.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "echo") {
            out.push(path);
        }
    }
}

/// The files of a directory, by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("readable file"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn echoc_gen_writes_the_build_scripts_files() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let golden = manifest.join("../echostream-idl/tests/valid");
    let schemas = manifest.join("schemas");
    let mut roots = Vec::new();
    collect(&golden, &mut roots);
    collect(&schemas, &mut roots);
    roots.sort();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("echoc-gen");
    let _ = std::fs::remove_dir_all(&out);

    let mut args: Vec<String> = vec!["echoc".into(), "gen".into()];
    for dir in [&golden, &schemas] {
        args.extend(["-I".into(), dir.display().to_string()]);
    }
    args.extend(["--out".into(), out.display().to_string()]);
    args.extend(roots.iter().map(|p| p.display().to_string()));
    let cli = <Cli as clap::Parser>::try_parse_from(&args).expect("valid arguments");
    assert!(
        run(&cli.command, &mut Output::stdio()),
        "echoc gen succeeds"
    );

    let generated = files(&out);
    let built = files(Path::new(env!("OUT_DIR")));
    assert!(generated.len() > 10, "{} files", generated.len());
    let names = |files: &[(String, Vec<u8>)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&generated), names(&built));
    for ((name, a), (_, b)) in generated.iter().zip(&built) {
        assert!(a == b, "{name} differs between echoc gen and build.rs");
    }
}
