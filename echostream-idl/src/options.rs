//! The options of the language (`[name = value, ...]`), what they apply to, their types and
//! allowed values. docs/idl.md documents the same table for users.

use crate::ast::{OptionSetting, OptionValueKind};
use crate::diagnostic::Diagnostic;

/// What an option list is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A message field.
    Field,
    /// An `rpc` method.
    Rpc,
    /// An `event` method.
    Event,
    /// A `stream` method.
    Stream,
}

impl Target {
    fn describe(self) -> &'static str {
        match self {
            Target::Field => "a field",
            Target::Rpc => "an rpc",
            Target::Event => "an event",
            Target::Stream => "a stream",
        }
    }
}

/// The type of an option's value.
#[derive(Clone, Copy, Debug)]
enum ValueType {
    Bool,
    /// An integer in `min..=max`.
    UInt {
        min: u64,
        max: u64,
    },
    /// One of these words.
    Word(&'static [&'static str]),
}

impl ValueType {
    fn describe(self) -> &'static str {
        match self {
            ValueType::Bool => "`true` or `false`",
            ValueType::UInt { .. } => "an integer",
            ValueType::Word(_) => "a word",
        }
    }
}

struct OptionDef {
    name: &'static str,
    targets: &'static [Target],
    ty: ValueType,
    /// Said after the allowed range when a value is outside it.
    why: Option<&'static str>,
}

/// The largest `timeout_ms`: 2^31 − 1 ms (about 24.8 days), the longest deadline every
/// runtime's timers hold (a signed 32-bit count of milliseconds, as in JavaScript and Java);
/// a longer one means no deadline, which is written by leaving the option out.
pub const MAX_TIMEOUT_MS: u64 = i32::MAX as u64;

/// Every option of the language.
const OPTIONS: &[OptionDef] = &[
    OptionDef {
        name: "deprecated",
        targets: &[Target::Field, Target::Rpc, Target::Event, Target::Stream],
        ty: ValueType::Bool,
        why: None,
    },
    OptionDef {
        name: "packed",
        targets: &[Target::Field],
        ty: ValueType::Bool,
        why: None,
    },
    OptionDef {
        name: "timeout_ms",
        targets: &[Target::Rpc],
        ty: ValueType::UInt {
            min: 1,
            max: MAX_TIMEOUT_MS,
        },
        why: Some("about 24.8 days; leave the option out for no timeout"),
    },
    OptionDef {
        name: "idempotent",
        targets: &[Target::Rpc],
        ty: ValueType::Bool,
        why: None,
    },
    OptionDef {
        name: "delivery",
        targets: &[Target::Stream],
        ty: ValueType::Word(&["datagram", "reliable"]),
        why: None,
    },
    OptionDef {
        name: "jitter_ms",
        targets: &[Target::Stream],
        ty: ValueType::UInt {
            min: 0,
            max: 10_000,
        },
        why: None,
    },
    OptionDef {
        name: "max_frame_bytes",
        targets: &[Target::Stream],
        ty: ValueType::UInt {
            min: 1,
            max: 16 * 1024 * 1024,
        },
        why: None,
    },
];

/// A type-checked option value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Bool(bool),
    UInt(u64),
    Word(String),
}

/// The options of one list that passed their checks, by name.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    values: Vec<(&'static str, Value, crate::source::Span)>,
}

impl Checked {
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(|v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        })
    }

    pub fn uint(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(|v| match v {
            Value::UInt(n) => Some(*n),
            _ => None,
        })
    }

    pub fn word(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| match v {
            Value::Word(w) => Some(w.as_str()),
            _ => None,
        })
    }

    /// Where option `name` was set.
    pub fn span(&self, name: &str) -> Option<crate::source::Span> {
        self.values
            .iter()
            .find(|(n, ..)| *n == name)
            .map(|(.., s)| *s)
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|(n, ..)| *n == name)
            .map(|(_, v, _)| v)
    }
}

/// Checks an option list against the definitions for `target`; bad options become
/// diagnostics and are left out of the result.
pub(crate) fn check(
    settings: &[OptionSetting],
    target: Target,
    diagnostics: &mut Vec<Diagnostic>,
) -> Checked {
    let mut checked = Checked::default();
    for setting in settings {
        let name = setting.name.name.as_str();
        let Some(def) = OPTIONS.iter().find(|d| d.name == name) else {
            let allowed: Vec<&str> = OPTIONS
                .iter()
                .filter(|d| d.targets.contains(&target))
                .map(|d| d.name)
                .collect();
            let mut d = Diagnostic::error(setting.name.span, format!("unknown option `{name}`"))
                .with_label(format!("not an option of {}", target.describe()));
            let close = allowed
                .iter()
                .filter(|a| {
                    strsim::levenshtein(a, name) <= 2.max(name.len() / 3)
                        || (name.len() >= 3 && (a.starts_with(name) || name.starts_with(*a)))
                })
                .min_by_key(|a| strsim::levenshtein(a, name));
            d = match close {
                Some(c) => d.with_help(format!("did you mean `{c}`?")),
                None => d.with_help(format!(
                    "the options of {} are {}",
                    target.describe(),
                    list(&allowed)
                )),
            };
            diagnostics.push(d);
            continue;
        };
        if !def.targets.contains(&target) {
            let applies: Vec<&str> = def.targets.iter().map(|t| t.describe()).collect();
            diagnostics.push(
                Diagnostic::error(
                    setting.name.span,
                    format!("option `{name}` does not apply to {}", target.describe()),
                )
                .with_label(format!("not an option of {}", target.describe()))
                .with_help(format!("`{name}` applies to {}", applies.join(" and "))),
            );
            continue;
        }
        if let Some(first) = checked.span(name) {
            diagnostics.push(
                Diagnostic::error(setting.name.span, format!("option `{name}` is set twice"))
                    .with_label("set again here")
                    .with_note(first, "first set here"),
            );
            continue;
        }
        match typed(def, &setting.value.kind) {
            Ok(value) => checked.values.push((def.name, value, setting.span)),
            Err(TypeError::Kind) => diagnostics.push(
                Diagnostic::error(
                    setting.value.span,
                    format!(
                        "option `{name}` takes {}, found {}",
                        def.ty.describe(),
                        setting.value.kind.describe()
                    ),
                )
                .with_label(format!("expected {}", def.ty.describe())),
            ),
            Err(TypeError::TooLarge) => {
                let (label, help) = out_of_range(def, name);
                diagnostics.push(
                    Diagnostic::error(
                        setting.value.span,
                        format!("the value of option `{name}` is too large"),
                    )
                    .with_label(label)
                    .with_help(help),
                );
            }
            Err(TypeError::Range(found)) => {
                let (label, help) = out_of_range(def, name);
                diagnostics.push(
                    Diagnostic::error(
                        setting.value.span,
                        format!("`{found}` is not a valid value for option `{name}`"),
                    )
                    .with_label(label)
                    .with_help(help),
                );
            }
        }
    }
    checked
}

/// The label and help of a value outside what option `name` allows.
fn out_of_range(def: &OptionDef, name: &str) -> (String, String) {
    let (label, mut help) = match def.ty {
        ValueType::UInt { min, max } => (
            format!("must be between {min} and {max}"),
            format!("`{name}` is an integer from {min} to {max}"),
        ),
        ValueType::Word(words) => {
            let words: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            (
                format!("expected {}", or_list(&words)),
                format!("`{name}` is {}", or_list(&words)),
            )
        }
        ValueType::Bool => (String::new(), String::new()),
    };
    if let Some(why) = def.why {
        help = format!("{help} ({why})");
    }
    (label, help)
}

enum TypeError {
    /// The literal has the wrong type.
    Kind,
    /// The literal has the right type but is not allowed; carries the literal as written.
    Range(String),
    /// The integer does not even fit in 64 bits.
    TooLarge,
}

fn typed(def: &OptionDef, value: &OptionValueKind) -> Result<Value, TypeError> {
    match (def.ty, value) {
        (ValueType::Bool, OptionValueKind::Bool(b)) => Ok(Value::Bool(*b)),
        (ValueType::UInt { min, max }, OptionValueKind::Int(n)) => match n {
            Some(n) if *n >= i128::from(min) && *n <= i128::from(max) => {
                Ok(Value::UInt(u64::try_from(*n).map_err(|_| TypeError::Kind)?))
            }
            Some(n) => Err(TypeError::Range(n.to_string())),
            None => Err(TypeError::TooLarge),
        },
        (ValueType::Word(words), OptionValueKind::Word(w)) => {
            if words.contains(&w.as_str()) {
                Ok(Value::Word(w.clone()))
            } else {
                Err(TypeError::Range(w.clone()))
            }
        }
        _ => Err(TypeError::Kind),
    }
}

fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    let quoted: Vec<&str> = quoted.iter().map(String::as_str).collect();
    match quoted.as_slice() {
        [] => "none".to_string(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
