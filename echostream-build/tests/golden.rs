//! Golden snapshots: the code generated for the language's valid golden schemas
//! (`echostream-idl/tests/valid`), and their `.proto` and JSON exports, compared with the files
//! under `tests/golden/`. A difference fails the test and is shown; after reviewing it,
//! `ECHO_BLESS=1 cargo test -p echostream-build --test golden` rewrites the snapshots.

use std::path::{Path, PathBuf};

use echostream_build::export::{json, proto};

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every valid golden schema, compiled together.
fn compilation() -> echostream_idl::Compilation {
    let golden = manifest().join("../echostream-idl/tests/valid");
    let mut roots = Vec::new();
    collect(&golden, &mut roots);
    roots.sort();
    assert!(roots.len() >= 18, "the golden schemas are found");
    let compilation = echostream_idl::compile(&roots, &[&golden]);
    assert!(
        !compilation.has_errors(),
        "{}",
        compilation.render_diagnostics(false)
    );
    compilation
}

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

/// Compares `files` (path relative to `dir`, content) with the snapshots in `dir`, or rewrites
/// them with `ECHO_BLESS=1`. Snapshots without a file are stale and fail too.
fn check(dir: &str, files: &[(String, String)]) {
    let dir = manifest().join("tests/golden").join(dir);
    let bless = std::env::var_os("ECHO_BLESS").is_some();
    if bless {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut failures = Vec::new();
    for (path, contents) in files {
        let file = dir.join(path);
        if bless {
            std::fs::create_dir_all(file.parent().expect("in a directory")).expect("mkdir");
            std::fs::write(&file, contents).expect("write snapshot");
            continue;
        }
        match std::fs::read_to_string(&file) {
            Ok(expected) if expected == *contents => {}
            Ok(expected) => {
                failures.push(format!("{path} differs:\n{}", diff(&expected, contents)))
            }
            Err(_) => failures.push(format!("{path}: no snapshot")),
        }
    }
    let mut existing = Vec::new();
    collect_all(&dir, &dir, &mut existing);
    for stale in existing
        .iter()
        .filter(|p| !files.iter().any(|(f, _)| f == *p))
    {
        failures.push(format!("{stale}: a snapshot of nothing generated"));
    }
    assert!(
        failures.is_empty(),
        "{}\n\nReview, then run with ECHO_BLESS=1 to accept.",
        failures.join("\n\n")
    );
}

fn collect_all(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect_all(root, &path, out);
        } else {
            let relative = path.strip_prefix(root).expect("under root");
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The first lines where `expected` and `actual` differ, with line numbers.
fn diff(expected: &str, actual: &str) -> String {
    let expected: Vec<&str> = expected.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    let mut out = Vec::new();
    for i in 0..expected.len().max(actual.len()) {
        let (e, a) = (expected.get(i), actual.get(i));
        if e != a {
            if let Some(e) = e {
                out.push(format!("{:>5} - {e}", i + 1));
            }
            if let Some(a) = a {
                out.push(format!("{:>5} + {a}", i + 1));
            }
        }
        if out.len() >= 40 {
            out.push("      ...".to_string());
            break;
        }
    }
    out.join("\n")
}

#[test]
fn generated_code() {
    let compilation = compilation();
    let files = echostream_build::configure()
        .emit_cargo_directives(false)
        .generate(&compilation)
        .expect("generates");
    let files: Vec<(String, String)> = files.into_iter().map(|f| (f.name, f.contents)).collect();
    check("rust", &files);
}

#[test]
fn proto_export() {
    let compilation = compilation();
    let schema = compilation.schema.as_ref().expect("valid");
    let files = proto::export(schema).expect("no package cycle");
    let files: Vec<(String, String)> = files.into_iter().map(|f| (f.path, f.contents)).collect();
    check("proto", &files);
}

/// The exported files are valid protobuf: a protobuf compiler (protox, written like protoc)
/// accepts every one, and sees events and streams as methods with their EchoStream options.
#[test]
fn exported_proto_files_compile_and_describe_every_method() {
    use prost_reflect::{DescriptorPool, Value};

    let compilation = compilation();
    let schema = compilation.schema.as_ref().expect("valid");
    let files = proto::export(schema).expect("no package cycle");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("golden-proto");
    let _ = std::fs::remove_dir_all(&dir);
    for file in &files {
        let path = dir.join(&file.path);
        std::fs::create_dir_all(path.parent().expect("in a directory")).expect("mkdir");
        std::fs::write(&path, &file.contents).expect("write");
    }
    let mut compiler = protox::Compiler::new([&dir]).expect("protox");
    compiler.include_imports(true);
    for file in &files {
        compiler
            .open_file(&file.path)
            .unwrap_or_else(|e| panic!("protox refuses {}: {e:?}", file.path));
    }
    let pool = DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice())
        .expect("a valid descriptor set");
    let option = pool
        .get_extension_by_name("echostream.options.method")
        .expect("the option is defined");
    // Every method of every schema service is there, with its kind.
    let mut methods = 0;
    for service in schema.services() {
        let exported = pool
            .get_service_by_name(&service.full_name)
            .unwrap_or_else(|| panic!("{} exported", service.full_name));
        for method in &service.methods {
            methods += 1;
            let m = exported
                .methods()
                .find(|m| m.name() == method.name)
                .unwrap_or_else(|| panic!("{}/{} exported", service.full_name, method.name));
            assert_eq!(m.input().full_name(), method.input);
            let options = m.options();
            let value = options.get_extension(&option);
            let kind = value
                .as_message()
                .and_then(|o| o.get_field_by_name("kind").map(|k| k.into_owned()));
            let expected = match method.kind.keyword() {
                "rpc" => 1,
                "event" => 2,
                _ => 3,
            };
            assert_eq!(kind, Some(Value::EnumNumber(expected)), "{}", m.full_name());
            assert_eq!(m.is_client_streaming(), method.kind.keyword() == "stream");
        }
    }
    assert!(methods > 30, "{methods} methods");
    // The options of one stream, as a protoc plugin would read them.
    let video = pool
        .get_service_by_name("chat.v1.ChatService")
        .and_then(|s| s.methods().find(|m| m.name() == "video_feed"))
        .expect("video_feed");
    let options = video.options();
    let value = options.get_extension(&option);
    let value = value.as_message().expect("a message");
    assert_eq!(
        *value.get_field_by_name("delivery").unwrap(),
        Value::EnumNumber(2)
    );
    assert_eq!(
        *value.get_field_by_name("jitter_ms").unwrap(),
        Value::U32(80)
    );
    assert_eq!(video.output().full_name(), "google.protobuf.Empty");
}

#[test]
fn json_export() {
    let compilation = compilation();
    let schema = compilation.schema.as_ref().expect("valid");
    check(
        "json",
        &[("descriptor.json".to_string(), json::export(schema))],
    );
}
