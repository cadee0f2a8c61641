//! The benchmark schema of the language, shared by `parse_check` here and `gen` in
//! echostream-build, so that both figures are for the same schema by construction.

use std::fmt::Write as _;

/// Messages in the schema.
pub const MESSAGES: usize = 5_000;
/// Fields per message.
pub const FIELDS: usize = 10;
/// Services in the schema.
pub const SERVICES: usize = 500;
/// Methods per service.
pub const METHODS: usize = 10;

/// The schema: fields of every scalar kind, optional/repeated labels, maps, enums, and
/// references to other messages; services mixing rpc, event and stream methods with options.
pub fn schema() -> String {
    const TYPES: [&str; 8] = [
        "string", "uint64", "int32", "bool", "bytes", "double", "Level", "Msg0",
    ];
    let mut s = String::from("/// Generated benchmark schema.\npackage bench.v1;\n\n");
    s.push_str(
        "enum Level {\n  LEVEL_UNSPECIFIED = 0;\n  LEVEL_LOW = 1;\n  LEVEL_HIGH = 2;\n}\n\n",
    );
    for m in 0..MESSAGES {
        let _ = writeln!(s, "/// Message number {m}.\nmessage Msg{m} {{");
        for f in 0..FIELDS {
            let n = f + 1;
            match f {
                7 => {
                    let _ = writeln!(
                        s,
                        "  map<string, Msg{}> field_{f} = {n};",
                        (m + 1) % MESSAGES
                    );
                }
                8 => {
                    let _ = writeln!(s, "  repeated Msg{} field_{f} = {n};", (m + 7) % MESSAGES);
                }
                9 => {
                    let _ = writeln!(s, "  optional string field_{f} = {n} [deprecated = true];");
                }
                _ => {
                    let _ = writeln!(
                        s,
                        "  {} field_{f} = {n}; // field {f}",
                        TYPES[f % TYPES.len()]
                    );
                }
            }
        }
        s.push_str("}\n\n");
    }
    for v in 0..SERVICES {
        let _ = writeln!(s, "/// Service number {v}.\nservice Service{v} {{");
        for k in 0..METHODS {
            let input = (v * METHODS + k) % MESSAGES;
            let output = (input + 1) % MESSAGES;
            let _ = match k % 3 {
                0 => writeln!(
                    s,
                    "  /// Method {k}.\n  rpc method_{k}(Msg{input}) returns (Msg{output}) [timeout_ms = 500, idempotent = true];"
                ),
                1 => writeln!(s, "  event method_{k}(Msg{input});"),
                _ => writeln!(
                    s,
                    "  stream method_{k}(Msg{input}) [delivery = datagram, jitter_ms = 40, max_frame_bytes = 65536];"
                ),
            };
        }
        s.push_str("}\n\n");
    }
    s
}
