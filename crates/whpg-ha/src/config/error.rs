//! Configuration errors: where a problem is (line, key), what is wrong (value, message) and how to fix it.
//!
//! Every check in this module tree reports through [`ConfigError`]; nothing here decides what is valid.

/// One problem in a configuration file.
///
/// Displayed as `line 7: vrrp.vrid = 300: VRID must be between 1 and 255 — fix: ...`; the line and the
/// value are left out when unknown (a missing key has no value; secrets are never echoed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(.line, .key, .value, .message, .fix))]
pub struct ConfigError {
    /// 1-based line of the key (or of its table when the key is missing), if known.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `vrrp.vrid`, `vip[0].label`, `nodes.cdw.address`; empty for file-level problems.
    pub key: String,
    /// The offending value as written in TOML (strings quoted), if there is one and it is not secret.
    pub value: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

fn describe(
    line: &Option<usize>,
    key: &str,
    value: &Option<String>,
    message: &str,
    fix: &str,
) -> String {
    let mut out = String::new();
    if let Some(line) = line {
        out.push_str(&format!("line {line}: "));
    }
    if !key.is_empty() {
        out.push_str(key);
        if let Some(value) = value {
            out.push_str(" = ");
            out.push_str(value);
        }
        out.push_str(": ");
    }
    out.push_str(message);
    if !fix.is_empty() {
        out.push_str(" — fix: ");
        out.push_str(fix);
    }
    out
}

/// Every problem found in a configuration file, in file order where lines are known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join(.errors))]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

fn join(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigErrors {
    /// A list holding a single error.
    pub fn single(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors reported for exactly this key path.
    pub fn for_key<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a ConfigError> + 'a {
        self.errors.iter().filter(move |e| e.key == key)
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// Formats a string the way TOML writes it, for error values and rendered output.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
