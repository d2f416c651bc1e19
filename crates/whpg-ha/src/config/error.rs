//! Configuration errors: where a problem is (line, key), what is wrong (value, message) and how to fix it.
//!
//! Every check in this module tree reports through [`ConfigError`]; nothing here decides what is valid.

/// One problem in a configuration file.
///
/// Displayed as `line 7: vrrp.vrid = 300: VRID must be between 1 and 255 — fix: ...`; the line and the
/// value are left out when unknown (a missing key has no value). What is echoed is made safe to print
/// on a terminal: the value of a secret key ([`is_secret_key`]) is never shown, control characters
/// are escaped, and a value longer than [`ECHO_LIMIT`] characters is cut to `…" (N bytes)`.
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
        out.push_str(&escape_controls(key));
        if let Some(value) = value.as_ref().filter(|_| !is_secret_key(key)) {
            out.push_str(" = ");
            out.push_str(&shorten_value(&escape_controls(value)));
        }
        out.push_str(": ");
    }
    out.push_str(&safe_message(key, message));
    if !fix.is_empty() {
        out.push_str(" — fix: ");
        out.push_str(&escape_controls(fix));
    }
    out
}

/// Values echoed in an error are cut after this many characters.
pub const ECHO_LIMIT: usize = 80;

/// Key names whose values are secrets, the one list that both the effective configuration
/// ([`Config::render_effective`](super::Config::render_effective)) and error messages mask.
pub(crate) const SECRET_KEY_NAMES: &[&str] = &["auth_pass"];

/// Whether the value of the key at dotted `path` (e.g. `vrrp.auth_pass`) is a secret: its last
/// segment is in [`SECRET_KEY_NAMES`], or contains `password`, `passwd` or `secret`, or starts with
/// `token` (so a misspelt or unknown `db_password = ...` is masked too). A name ending in `_file`
/// (`password_file`, `token_file`) holds the path of a secret, not the secret, and is shown.
pub fn is_secret_key(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    let last = last.split('[').next().unwrap_or(last);
    let name = last.trim_matches('"').to_ascii_lowercase();
    if name.ends_with("_file") {
        return false;
    }
    SECRET_KEY_NAMES.contains(&name.as_str())
        || ["password", "passwd", "secret"]
            .iter()
            .any(|word| name.contains(word))
        || name.starts_with("token")
}

/// `text` with control characters written as `\uXXXX` (a terminal never sees an escape sequence).
pub(crate) fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{:04X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// A message made safe to print for `key`: control characters escaped, quoted runs (`` `…` `` or
/// `"…"`) longer than [`ECHO_LIMIT`] cut, and for a secret key every quoted run masked (the
/// TOML parser quotes the offending value: ``invalid type: integer `12345678` ``). An
/// `unknown field` message quotes key names, not values, and keeps them.
pub(crate) fn safe_message(key: &str, message: &str) -> String {
    let mask = is_secret_key(key) && !message.starts_with("unknown field");
    let message = escape_controls(message);
    let mut out = String::with_capacity(message.len());
    let mut rest = message.as_str();
    while let Some(open) = rest.find(['`', '"']) {
        let delim = rest[open..].chars().next().unwrap_or('`');
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        let Some(close) = closing(after, delim) else {
            // An unpaired quote: what follows may still be a value.
            out.push_str(&if mask {
                super::model::Secret::MASK.to_string()
            } else {
                shorten_run(after)
            });
            return out;
        };
        let inner = &after[..close];
        if mask {
            out.push_str(super::model::Secret::MASK);
            out.push(delim);
        } else if inner.chars().count() > ECHO_LIMIT
            // Already cut (a message passes here when built and again when shown).
            && !(inner.ends_with('…') && inner.chars().count() == ECHO_LIMIT + 1)
        {
            let cut: String = inner.chars().take(ECHO_LIMIT).collect();
            out.push_str(&format!("{cut}…{delim} ({} bytes)", inner.len()));
        } else {
            out.push_str(inner);
            out.push(delim);
        }
        rest = &after[close + delim.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// The offset of the quote that closes a run opened by `delim` (a `\"` inside `"…"` is not one).
fn closing(text: &str, delim: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            '\\' if delim == '"' && !escaped => escaped = true,
            c if c == delim && !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn shorten_run(text: &str) -> String {
    if text.chars().count() > ECHO_LIMIT {
        let cut: String = text.chars().take(ECHO_LIMIT).collect();
        format!("{cut}… ({} bytes)", text.len())
    } else {
        text.to_string()
    }
}

/// A value as written in TOML, cut after [`ECHO_LIMIT`] characters of its content: a quoted string
/// becomes `"first 80 characters…" (N bytes)`, N counting the string's own bytes (an escape such
/// as `\u001B` is one character of it and is never cut in half).
pub(crate) fn shorten_value(value: &str) -> String {
    let Some(inner) = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|_| value.len() >= 2)
    else {
        return shorten_run(value);
    };
    // Walk the escaped text one decoded character at a time.
    let mut kept = 0;
    let mut cut_at = None;
    let mut decoded_bytes = 0;
    let mut chars = inner.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if kept == ECHO_LIMIT && cut_at.is_none() {
            cut_at = Some(i);
        }
        kept += 1;
        if c == '\\' {
            match chars.next() {
                Some((_, 'u')) => {
                    let hex: String = (0..4)
                        .filter_map(|_| chars.next().map(|(_, h)| h))
                        .collect();
                    decoded_bytes += u32::from_str_radix(&hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .map_or(1, char::len_utf8);
                }
                Some((_, 'U')) => {
                    let hex: String = (0..8)
                        .filter_map(|_| chars.next().map(|(_, h)| h))
                        .collect();
                    decoded_bytes += u32::from_str_radix(&hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .map_or(1, char::len_utf8);
                }
                _ => decoded_bytes += 1,
            }
        } else {
            decoded_bytes += c.len_utf8();
        }
    }
    match cut_at {
        Some(at) => format!("\"{}…\" ({decoded_bytes} bytes)", &inner[..at]),
        None => value.to_string(),
    }
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
