//! Argv templates: `{name}` placeholders inside arguments, `{{` and `}}` for literal braces.
//!
//! Owns the placeholder vocabulary and expansion. Templates are never handed to a shell; each element
//! stays one argument whatever its value contains.

use super::model::CommandSpec;

/// Every placeholder a command template may use, with what it stands for.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("data_directory", "database.data_directory"),
    ("port", "database.port"),
    ("bin_dir", "database.bin_dir (must be set)"),
    ("user", "database.user"),
    ("dbname", "database.dbname"),
    ("os_user", "database.os_user"),
    ("node", "this node's name"),
    ("node_address", "this node's address"),
    ("peer", "the peer node's name"),
    ("peer_address", "the peer node's address"),
    (
        "primary_host",
        "address of the node whose database is the primary (at run time)",
    ),
    (
        "standby_host",
        "address of the node to become the standby (at run time)",
    ),
];

/// Whether `name` is a known placeholder.
pub fn is_placeholder(name: &str) -> bool {
    PLACEHOLDERS.iter().any(|(known, _)| *known == name)
}

/// A piece of one argument.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(String),
    Placeholder(&'a str),
}

/// Splits one argument into text and placeholders; the error says what is malformed.
fn pieces(arg: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = arg;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("{{") {
            text.push('{');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("}}") {
            text.push('}');
            rest = after;
        } else if c == '{' {
            let end = rest.find('}').ok_or_else(|| {
                "has a '{' without a closing '}' (write {{ for a literal brace)".to_string()
            })?;
            if !text.is_empty() {
                out.push(Piece::Text(std::mem::take(&mut text)));
            }
            out.push(Piece::Placeholder(&rest[1..end]));
            rest = &rest[end + 1..];
        } else if c == '}' {
            return Err(
                "has a '}' without an opening '{' (write }} for a literal brace)".to_string(),
            );
        } else {
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

/// The placeholder names used in one argument.
pub fn placeholders_in(arg: &str) -> Result<Vec<&str>, String> {
    Ok(pieces(arg)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Placeholder(name) => Some(name),
            Piece::Text(_) => None,
        })
        .collect())
}

impl CommandSpec {
    /// Substitutes every placeholder via `lookup`; fails naming the first placeholder without a value.
    pub fn expand(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<String>, String> {
        self.argv
            .iter()
            .map(|arg| {
                let mut out = String::new();
                for piece in pieces(arg)? {
                    match piece {
                        Piece::Text(text) => out.push_str(&text),
                        Piece::Placeholder(name) => out.push_str(
                            &lookup(name).ok_or_else(|| format!("no value for {{{name}}}"))?,
                        ),
                    }
                }
                Ok(out)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expands_placeholders_and_escapes() {
        let spec = CommandSpec {
            argv: vec![
                "{bin_dir}/pg_ctl".into(),
                "-D".into(),
                "{data_directory}".into(),
                "{{x}}".into(),
            ],
            timeout: Duration::from_secs(1),
        };
        let argv = spec
            .expand(|name| match name {
                "bin_dir" => Some("/usr/bin".into()),
                "data_directory" => Some("/data dir".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(argv, ["/usr/bin/pg_ctl", "-D", "/data dir", "{x}"]);
    }

    #[test]
    fn reports_malformed_braces_and_missing_values() {
        assert!(placeholders_in("{oops").is_err());
        assert!(placeholders_in("oops}").is_err());
        assert_eq!(placeholders_in("a{port}b{user}").unwrap(), ["port", "user"]);
        let spec = CommandSpec {
            argv: vec!["{peer}".into()],
            timeout: Duration::ZERO,
        };
        assert!(spec.expand(|_| None).is_err());
    }
}
