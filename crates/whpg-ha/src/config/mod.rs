//! Configuration: one TOML file, identical on both nodes, parsed, validated and rendered.
//!
//! The file lists both nodes; each daemon finds its own entry (`--node` > the `node` key > the host
//! name). Layout: `schema` (the file as written) → `validate` (all rules, all errors) → `model` (the
//! typed [`Config`]); `render` writes the effective configuration back out. `docs/configuration.md`
//! documents every key.

mod defaults;
mod duration;
mod error;
mod model;
mod render;
mod schema;
mod spans;
mod template;
#[doc(hidden)]
pub mod testing;
mod validate;

use std::path::Path;
use std::process::ExitCode;

pub use defaults::CommandKind;
pub use duration::{format_duration, parse_duration};
pub use error::{is_secret_key, ConfigError, ConfigErrors, ECHO_LIMIT};
pub use model::*;
pub use template::PLACEHOLDERS;

use spans::SpanIndex;

/// Reads, validates and resolves the configuration file at `path` for `node` (see [`parse`]).
pub fn load(path: &Path, node: Option<&str>) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(ConfigError {
            line: None,
            key: String::new(),
            value: None,
            message: format!("cannot read {}: {e}", path.display()),
            fix: "check the path and its permissions, or pass the right file".into(),
        })
    })?;
    parse(&text, node)
}

/// Validates and resolves configuration `text`. This node is `node` if given (the `--node` flag), else
/// the file's top-level `node` key, else this host's name (full, then up to the first dot).
pub fn parse(text: &str, node: Option<&str>) -> Result<Config, ConfigErrors> {
    parse_with_hostname(text, node, &host_name)
}

/// [`parse`] with the host name supplied by the caller (for tests and tools).
pub fn parse_with_hostname(
    text: &str,
    node: Option<&str>,
    hostname: &dyn Fn() -> Result<String, String>,
) -> Result<Config, ConfigErrors> {
    let spans = SpanIndex::build(text);
    let raw: schema::RawConfig =
        toml::from_str(text).map_err(|e| structural_error(&e, &spans, text))?;
    validate::resolve(raw, &spans, node, hostname)
}

/// Turns a TOML syntax or shape error (unknown key, wrong type) into a [`ConfigError`] with its line.
///
/// The parser's message may quote the offending text; it is made safe to print here (see
/// [`error::safe_message`]): masked when the key, or the key written on that line of a file that
/// does not parse, is a secret.
fn structural_error(e: &toml::de::Error, spans: &SpanIndex, text: &str) -> ConfigErrors {
    let span = e.span();
    let line = span.as_ref().map(|s| spans.line_of(s.start));
    let key = span
        .as_ref()
        .and_then(|s| spans.path_at(s))
        .unwrap_or_default()
        .to_string();
    let mut message = e
        .message()
        .trim()
        .replace("expected i64", "expected an integer");
    // The `key = value` written on the error's line, for a secret whose path the span misses.
    let written = line
        .and_then(|n| text.lines().nth(n - 1))
        .and_then(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().trim_matches(['"', '\'']).to_string(), v.trim()));
    let line_key = written.as_ref().map(|(k, _)| k.as_str()).unwrap_or("");
    if let Some((_, value)) = written
        .as_ref()
        .filter(|_| is_secret_key(&key) || is_secret_key(line_key))
    {
        let bare = value.trim_matches(['"', '\'']);
        for shown in [*value, bare] {
            if shown.len() >= 4 {
                message = message.replace(shown, Secret::MASK);
            }
        }
    }
    let judged_as = if !is_secret_key(&key) && is_secret_key(line_key) {
        line_key
    } else {
        key.as_str()
    };
    let message = error::safe_message(judged_as, &message);
    let fix = if message.starts_with("unknown field") {
        "remove the key or correct its spelling (the message lists the keys allowed here)"
    } else if message.starts_with("invalid type") {
        "write the value with the type documented in docs/configuration.md"
    } else if message.starts_with("duplicate key") {
        "keep one of the two definitions"
    } else {
        "correct the TOML syntax on that line"
    };
    // An unknown key named in the message is also the last segment of the path found by its span.
    ConfigErrors::single(ConfigError {
        line,
        key,
        value: None,
        message,
        fix: fix.into(),
    })
}

/// This host's name, from the kernel.
fn host_name() -> Result<String, String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| format!("cannot read /proc/sys/kernel/hostname: {e}"))?;
    let name = name.trim();
    if name.is_empty() {
        Err("the host name is empty".into())
    } else {
        Ok(name.to_string())
    }
}

/// The outcome of checking a file without knowing which node this host is.
#[derive(Debug)]
pub struct EveryNodeCheck {
    /// The `[nodes.*]` names, in file order of their keys (sorted).
    pub nodes: Vec<String>,
    /// This host's name, or why it is unknown.
    pub host: Result<String, String>,
    /// Each node's result.
    pub results: Vec<(String, Result<Config, ConfigErrors>)>,
}

impl EveryNodeCheck {
    /// Every node's configuration is valid.
    pub fn all_valid(&self) -> bool {
        self.results.iter().all(|(_, r)| r.is_ok())
    }

    /// The one-line summary: `validated for nodes cdw, scdw: this host (name X) is neither; ...`.
    pub fn summary(&self) -> String {
        let names = self.nodes.join(", ");
        let host = match &self.host {
            Ok(name) => format!("this host (name {}) is", error::quote(name)),
            Err(why) => format!("this host's name is unknown ({why}), so it is"),
        };
        let which = if self.nodes.len() == 2 {
            "neither"
        } else {
            "none of them"
        };
        if self.all_valid() {
            format!(
                "validated for nodes {names}: {host} {which}; pass --node NAME to print that node's effective configuration"
            )
        } else {
            format!("checked for nodes {names}: {host} {which}; pass --node NAME to check for one")
        }
    }
}

/// When neither `--node` nor the file's `node` key says which node this is and this host's name
/// (full or short) is no `[nodes.*]` entry, the file is checked for every node instead; `None`
/// when this host is one of them, the file names its node, or the file does not parse (then
/// [`parse`] reports as usual).
pub fn check_every_node(
    text: &str,
    hostname: &dyn Fn() -> Result<String, String>,
) -> Option<EveryNodeCheck> {
    let raw: schema::RawConfig = toml::from_str(text).ok()?;
    if raw.node.is_some() || raw.nodes.is_empty() {
        return None;
    }
    let host = hostname();
    if let Ok(name) = &host {
        let short = name.split_once('.').map(|(s, _)| s);
        if raw.nodes.contains_key(name) || short.is_some_and(|s| raw.nodes.contains_key(s)) {
            return None;
        }
    }
    let nodes: Vec<String> = raw.nodes.keys().cloned().collect();
    let results = nodes
        .iter()
        .map(|name| {
            (
                name.clone(),
                parse_with_hostname(text, Some(name), hostname),
            )
        })
        .collect();
    Some(EveryNodeCheck {
        nodes,
        host,
        results,
    })
}

/// `whpg-ha check-config FILE`: print the effective configuration or every error; exit 0 / 1.
///
/// Warnings go to stderr as `warning: FILE: ...` and do not change the exit status.
///
/// Without `--node`, on a host that is no `[nodes.*]` entry of a file without a `node` key, the file
/// is checked for every node ([`check_every_node`]): stdout then holds one comment line saying so
/// (still a valid, empty TOML document), problems shared by all nodes are printed once and the others
/// with `(as node NAME)`; exit 0 when every node's configuration is valid.
pub fn check_config_command(file: &Path, node: Option<&str>) -> ExitCode {
    if node.is_none() {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Some(check) = check_every_node(&text, &host_name) {
                return report_every_node(file, &check);
            }
        }
    }
    match load(file, node) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {}: {warning}", file.display());
            }
            print!("{}", config.render_effective());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {}: {error}", file.display());
            }
            ExitCode::from(1)
        }
    }
}

fn report_every_node(file: &Path, check: &EveryNodeCheck) -> ExitCode {
    let file = file.display();
    // (text, nodes it was reported for), in first-seen order.
    let mut warnings: Vec<(String, Vec<&str>)> = Vec::new();
    let mut errors: Vec<(String, Vec<&str>)> = Vec::new();
    for (node, result) in &check.results {
        let (list, items): (&mut Vec<(String, Vec<&str>)>, Vec<String>) = match result {
            Ok(config) => (
                &mut warnings,
                config.warnings.iter().map(ToString::to_string).collect(),
            ),
            Err(errs) => (&mut errors, errs.iter().map(ToString::to_string).collect()),
        };
        for text in items {
            match list.iter_mut().find(|(t, _)| *t == text) {
                Some((_, nodes)) => nodes.push(node),
                None => list.push((text, vec![node])),
            }
        }
    }
    let every = check.results.len();
    let tag = |nodes: &[&str]| {
        if nodes.len() == every {
            String::new()
        } else {
            format!("(as node {}) ", nodes.join(", "))
        }
    };
    for (text, nodes) in &warnings {
        eprintln!("warning: {file}: {}{text}", tag(nodes));
    }
    for (text, nodes) in &errors {
        eprintln!("error: {file}: {}{text}", tag(nodes));
    }
    if check.all_valid() {
        println!("# {}", check.summary());
        ExitCode::SUCCESS
    } else {
        eprintln!("error: {file}: {}", check.summary());
        ExitCode::from(1)
    }
}
