//! keepalived.conf grammar: a tokenizer and a parser into statements with blocks, each word with its
//! file and line.
//!
//! The grammar as keepalived reads it: a statement is a keyword and its arguments up to the end of the
//! line, optionally followed by a `{ ... }` block of statements (on the same line or the next one);
//! `#` and `!` start a comment anywhere outside quotes; `"..."` and `'...'` quote (with backslash
//! escapes) and join with adjacent unquoted text into one word, like the shell; a backslash at the end
//! of a line continues it. `include PATTERN` statements are kept as statements here and expanded by
//! [`load`], which is the only part that touches the file system.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a word or statement is: the file as given on the command line (or resolved from an `include`)
/// and the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One word after quote removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub loc: Loc,
}

/// A keyword, its arguments and its block, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    pub keyword: Word,
    pub args: Vec<Word>,
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    pub fn loc(&self) -> &Loc {
        &self.keyword.loc
    }

    pub fn name(&self) -> &str {
        &self.keyword.text
    }

    /// The keyword and its arguments as one line, for messages (the block is shown as `{ ... }`).
    pub fn summary(&self) -> String {
        let mut s = self.keyword.text.clone();
        for a in &self.args {
            s.push(' ');
            if a.text.is_empty() || a.text.contains(char::is_whitespace) {
                s.push('"');
                s.push_str(&a.text);
                s.push('"');
            } else {
                s.push_str(&a.text);
            }
        }
        if self.block.is_some() {
            s.push_str(" { ... }");
        }
        s
    }
}

/// A syntax or include error, with the place to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub loc: Loc,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} — fix: {}", self.loc, self.message, self.fix)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Open,
    Close,
    Newline,
}

/// Splits `text` into words, braces and line ends; every token carries its line.
fn tokenize(text: &str, file: &Arc<str>) -> Result<Vec<(Tok, u32)>, ParseError> {
    let loc = |line: u32| Loc {
        file: file.clone(),
        line,
    };
    let mut out = Vec::new();
    let mut line: u32 = 1;
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();

    fn end_word(out: &mut Vec<(Tok, u32)>, word: &mut String, in_word: &mut bool, line: u32) {
        if *in_word {
            out.push((Tok::Word(std::mem::take(word)), line));
            *in_word = false;
        }
    }

    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                end_word(&mut out, &mut word, &mut in_word, line);
                out.push((Tok::Newline, line));
                line += 1;
            }
            '#' | '!' => {
                end_word(&mut out, &mut word, &mut in_word, line);
                while let Some(&n) = chars.peek() {
                    if n == '\n' {
                        break;
                    }
                    chars.next();
                }
            }
            '{' | '}' => {
                end_word(&mut out, &mut word, &mut in_word, line);
                out.push((if c == '{' { Tok::Open } else { Tok::Close }, line));
            }
            '\\' if matches!(chars.peek(), Some('\n')) => {
                // A continued line: the statement goes on, the line count too.
                chars.next();
                end_word(&mut out, &mut word, &mut in_word, line);
                line += 1;
            }
            '\\' if matches!(chars.peek(), Some('\r')) => {
                chars.next();
                if matches!(chars.peek(), Some('\n')) {
                    chars.next();
                }
                end_word(&mut out, &mut word, &mut in_word, line);
                line += 1;
            }
            '"' | '\'' => {
                let quote = c;
                let start = line;
                in_word = true;
                loop {
                    match chars.next() {
                        None | Some('\n') => {
                            return Err(ParseError {
                                loc: loc(start),
                                message: format!("the quoted string starting with {quote} is not closed on its line"),
                                fix: format!("add the closing {quote} on the same line"),
                            });
                        }
                        Some(q) if q == quote => break,
                        Some('\\') => match chars.next() {
                            None | Some('\n') => {
                                return Err(ParseError {
                                    loc: loc(start),
                                    message: format!(
                                        "the quoted string starting with {quote} ends in a backslash"
                                    ),
                                    fix: format!("close the string with {quote} on the same line"),
                                });
                            }
                            Some(e) => word.push(unescape(e, &mut chars)),
                        },
                        Some(other) => word.push(other),
                    }
                }
            }
            c if c.is_whitespace() => end_word(&mut out, &mut word, &mut in_word, line),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut out, &mut word, &mut in_word, line);
    Ok(out)
}

/// The character an escape `\e` inside quotes stands for (`\n`, `\t`, `\xHH`, `\NNN` octal, ...).
fn unescape(e: char, chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> char {
    match e {
        'a' => '\x07',
        'b' => '\x08',
        'E' => '\x1b',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        'x' => {
            let mut v = 0u32;
            let mut n = 0;
            while n < 2 {
                match chars.peek().and_then(|c| c.to_digit(16)) {
                    Some(d) => {
                        v = v * 16 + d;
                        chars.next();
                        n += 1;
                    }
                    None => break,
                }
            }
            if n == 0 {
                'x'
            } else {
                char::from_u32(v).unwrap_or('x')
            }
        }
        '0'..='7' => {
            let mut v = e.to_digit(8).unwrap_or(0);
            let mut n = 1;
            while n < 3 {
                match chars.peek().and_then(|c| c.to_digit(8)) {
                    Some(d) => {
                        v = v * 8 + d;
                        chars.next();
                        n += 1;
                    }
                    None => break,
                }
            }
            char::from_u32(v).unwrap_or('?')
        }
        other => other,
    }
}

/// Parses one file's text into statements. `file` is the name used in locations. `include`
/// statements are returned as they are (see [`load`]).
pub fn parse(text: &str, file: &str) -> Result<Vec<Stmt>, ParseError> {
    let file: Arc<str> = Arc::from(file);
    let toks = tokenize(text, &file)?;
    let mut pos = 0;
    let stmts = parse_block(&toks, &mut pos, &file, None)?;
    Ok(stmts)
}

/// Parses statements until the matching `}` (when `opened` is the line of its `{`) or the end.
fn parse_block(
    toks: &[(Tok, u32)],
    pos: &mut usize,
    file: &Arc<str>,
    opened: Option<(u32, String)>,
) -> Result<Vec<Stmt>, ParseError> {
    let loc = |line: u32| Loc {
        file: file.clone(),
        line,
    };
    let mut stmts: Vec<Stmt> = Vec::new();
    // Whether the last statement may still take a block that opens on a following line.
    let mut last_open_for_block = false;
    while *pos < toks.len() {
        let (tok, line) = &toks[*pos];
        match tok {
            Tok::Newline => {
                *pos += 1;
            }
            Tok::Close => {
                *pos += 1;
                if opened.is_some() {
                    return Ok(stmts);
                }
                return Err(ParseError {
                    loc: loc(*line),
                    message: "'}' closes no block".into(),
                    fix: "remove the extra '}' or add the '{' it belongs to".into(),
                });
            }
            Tok::Open => {
                // A block on its own line belongs to the statement before it (Allman style).
                *pos += 1;
                let Some(prev) = stmts.last_mut().filter(|_| last_open_for_block) else {
                    return Err(ParseError {
                        loc: loc(*line),
                        message: "'{' without a keyword before it".into(),
                        fix: "put the block's keyword (e.g. vrrp_instance NAME) before the '{'"
                            .into(),
                    });
                };
                let inner = parse_block(toks, pos, file, Some((*line, prev.keyword.text.clone())))?;
                prev.block = Some(inner);
                last_open_for_block = false;
            }
            Tok::Word(_) => {
                let mut words: Vec<Word> = Vec::new();
                while let Some((Tok::Word(w), l)) = toks.get(*pos) {
                    words.push(Word {
                        text: w.clone(),
                        loc: loc(*l),
                    });
                    *pos += 1;
                }
                let keyword = words.remove(0);
                let mut stmt = Stmt {
                    keyword,
                    args: words,
                    block: None,
                };
                last_open_for_block = true;
                if let Some((Tok::Open, l)) = toks.get(*pos) {
                    let l = *l;
                    *pos += 1;
                    stmt.block = Some(parse_block(
                        toks,
                        pos,
                        file,
                        Some((l, stmt.keyword.text.clone())),
                    )?);
                    last_open_for_block = false;
                }
                stmts.push(stmt);
            }
        }
    }
    match opened {
        Some((line, keyword)) => Err(ParseError {
            loc: loc(line),
            message: format!("the block of {keyword:?} opened here is never closed"),
            fix: "add the missing '}' (every '{' needs one)".into(),
        }),
        None => Ok(stmts),
    }
}

/// The include keywords (keepalived's variants differ only in how strictly missing files are
/// treated).
pub const INCLUDE_KEYWORDS: [&str; 6] = [
    "include", "includer", "includem", "includew", "includeb", "includea",
];

/// Included files nested deeper than this are refused (keepalived has no loops to offer either).
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// A file read by [`load`], for the output's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedFile {
    pub path: PathBuf,
    pub included_from: Option<Loc>,
}

/// The result of [`load`]: the statements with every include expanded in place, the files read, and
/// includes that matched nothing (reported, not fatal, as keepalived's own `include` does).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub stmts: Vec<Stmt>,
    pub files: Vec<LoadedFile>,
    pub empty_includes: Vec<(Loc, String)>,
}

/// Reads `path` and every file it includes (relative patterns resolve against the including file's
/// directory; globs expand in sorted order), refusing cycles and nesting deeper than
/// [`MAX_INCLUDE_DEPTH`].
pub fn load(path: &Path) -> Result<Loaded, ParseError> {
    let mut loaded = Loaded::default();
    let mut stack = Vec::new();
    loaded.stmts = load_file(path, None, &mut stack, &mut loaded)?;
    Ok(loaded)
}

fn load_file(
    path: &Path,
    from: Option<&Loc>,
    stack: &mut Vec<PathBuf>,
    loaded: &mut Loaded,
) -> Result<Vec<Stmt>, ParseError> {
    let here = || {
        from.cloned().unwrap_or(Loc {
            file: Arc::from(path.display().to_string()),
            line: 0,
        })
    };
    let canonical = std::fs::canonicalize(path).map_err(|e| ParseError {
        loc: here(),
        message: format!("cannot read {}: {e}", path.display()),
        fix: "check the path and its permissions".into(),
    })?;
    if stack.contains(&canonical) {
        return Err(ParseError {
            loc: here(),
            message: format!(
                "{} includes itself (through {})",
                path.display(),
                stack
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
            fix: "remove the include that closes the loop".into(),
        });
    }
    if stack.len() >= MAX_INCLUDE_DEPTH {
        return Err(ParseError {
            loc: here(),
            message: format!(
                "includes are nested more than {MAX_INCLUDE_DEPTH} deep at {}",
                path.display()
            ),
            fix: "flatten the includes".into(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| ParseError {
        loc: here(),
        message: format!("cannot read {}: {e}", path.display()),
        fix: "check the path and its permissions".into(),
    })?;
    loaded.files.push(LoadedFile {
        path: path.to_path_buf(),
        included_from: from.cloned(),
    });
    let stmts = parse(&text, &path.display().to_string())?;
    stack.push(canonical);
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let out = expand(stmts, &dir, stack, loaded);
    stack.pop();
    out
}

fn expand(
    stmts: Vec<Stmt>,
    dir: &Path,
    stack: &mut Vec<PathBuf>,
    loaded: &mut Loaded,
) -> Result<Vec<Stmt>, ParseError> {
    let mut out = Vec::with_capacity(stmts.len());
    for mut stmt in stmts {
        if INCLUDE_KEYWORDS.contains(&stmt.name()) && stmt.block.is_none() {
            let Some(pattern) = stmt.args.first() else {
                return Err(ParseError {
                    loc: stmt.loc().clone(),
                    message: format!("{} without a file name", stmt.name()),
                    fix: "write `include FILE` (a path or a glob pattern)".into(),
                });
            };
            let full = if Path::new(&pattern.text).is_absolute() {
                PathBuf::from(&pattern.text)
            } else {
                dir.join(&pattern.text)
            };
            let full_text = full.display().to_string();
            let has_glob = pattern.text.contains(['*', '?', '[']);
            let mut matches: Vec<PathBuf> = if has_glob {
                let paths = glob::glob(&full_text).map_err(|e| ParseError {
                    loc: stmt.loc().clone(),
                    message: format!("bad include pattern {:?}: {e}", pattern.text),
                    fix: "correct the glob pattern".into(),
                })?;
                paths
                    .filter_map(Result::ok)
                    .filter(|p| p.is_file())
                    .collect()
            } else if full.exists() {
                vec![full.clone()]
            } else {
                return Err(ParseError {
                    loc: stmt.loc().clone(),
                    message: format!("included file {full_text} does not exist"),
                    fix: "copy the included file next to the configuration (relative includes resolve against the including file's directory), or remove the include".into(),
                });
            };
            matches.sort();
            if matches.is_empty() {
                loaded
                    .empty_includes
                    .push((stmt.loc().clone(), pattern.text.clone()));
            }
            for m in matches {
                out.extend(load_file(&m, Some(stmt.loc()), stack, loaded)?);
            }
        } else {
            if let Some(block) = stmt.block.take() {
                stmt.block = Some(expand(block, dir, stack, loaded)?);
            }
            out.push(stmt);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &Stmt) -> Vec<&str> {
        std::iter::once(s.name())
            .chain(s.args.iter().map(|w| w.text.as_str()))
            .collect()
    }

    #[test]
    fn statements_blocks_and_lines() {
        let text = "global_defs {\n  router_id cdw\n}\n\nvrrp_instance VI_1 {\n  state MASTER\n  virtual_ipaddress {\n    10.0.0.1/24 dev eth0\n  }\n}\n";
        let s = parse(text, "k.conf").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(words(&s[0]), ["global_defs"]);
        let g = s[0].block.as_ref().unwrap();
        assert_eq!(words(&g[0]), ["router_id", "cdw"]);
        assert_eq!(g[0].loc().line, 2);
        let vi = &s[1];
        assert_eq!(words(vi), ["vrrp_instance", "VI_1"]);
        assert_eq!(vi.loc().to_string(), "k.conf:5");
        let inner = vi.block.as_ref().unwrap();
        assert_eq!(words(&inner[0]), ["state", "MASTER"]);
        let vips = inner[1].block.as_ref().unwrap();
        assert_eq!(words(&vips[0]), ["10.0.0.1/24", "dev", "eth0"]);
        assert_eq!(vips[0].loc().line, 8);
    }

    #[test]
    fn comments_anywhere_and_quotes() {
        let text = "! header\nvrrp_script chk { # why\n  script \"/bin/ping -c 1 10.0.0.1\"   ! trailing\n  interval 2#no space\n  weight\t-2\n}\nnotify_master '/x/notify.sh MASTER' gpadmin\nauth_pass \"a#b!c\"\nx abc\" d\"e\n";
        let s = parse(text, "k").unwrap();
        let b = s[0].block.as_ref().unwrap();
        assert_eq!(words(&b[0]), ["script", "/bin/ping -c 1 10.0.0.1"]);
        assert_eq!(words(&b[1]), ["interval", "2"]);
        assert_eq!(words(&b[2]), ["weight", "-2"]);
        assert_eq!(
            words(&s[1]),
            ["notify_master", "/x/notify.sh MASTER", "gpadmin"]
        );
        assert_eq!(words(&s[2]), ["auth_pass", "a#b!c"]);
        assert_eq!(words(&s[3]), ["x", "abc de"]);
    }

    #[test]
    fn one_line_blocks_and_brace_on_next_line() {
        let text = "vrrp_instance VI_1\n{\n  unicast_peer { 10.0.0.2 }\n  authentication { auth_type PASS auth_pass x }\n}\n";
        let s = parse(text, "k").unwrap();
        let b = s[0].block.as_ref().unwrap();
        assert_eq!(words(&b[0]), ["unicast_peer"]);
        assert_eq!(words(&b[0].block.as_ref().unwrap()[0]), ["10.0.0.2"]);
        assert_eq!(
            words(&b[1].block.as_ref().unwrap()[0]),
            ["auth_type", "PASS", "auth_pass", "x"]
        );
    }

    #[test]
    fn escapes_and_continuation() {
        let s = parse("a \"x\\ty\\x41\\101\\\\\\\"\"\nb one \\\n two\nc\n", "k").unwrap();
        assert_eq!(words(&s[0]), ["a", "x\tyAA\\\""]);
        assert_eq!(words(&s[1]), ["b", "one", "two"]);
        assert_eq!(s[2].loc().line, 4);
    }

    #[test]
    fn empty_quoted_string_is_a_word() {
        let s = parse("auth_pass \"\"\n", "k").unwrap();
        assert_eq!(s[0].args.len(), 1);
        assert_eq!(s[0].args[0].text, "");
    }

    #[test]
    fn unclosed_brace_names_the_opening_line() {
        let err = parse(
            "global_defs {\n}\nvrrp_instance VI_1 {\n  state BACKUP\n",
            "a.conf",
        )
        .unwrap_err();
        assert_eq!(err.loc.to_string(), "a.conf:3");
        assert!(err.message.contains("\"vrrp_instance\""), "{err}");
        assert!(err.message.contains("never closed"), "{err}");
        assert!(err.to_string().contains("add the missing '}'"), "{err}");
    }

    #[test]
    fn extra_close_brace_is_an_error() {
        let err = parse("a {\n}\n}\n", "b.conf").unwrap_err();
        assert_eq!(err.loc.to_string(), "b.conf:3");
        assert!(err.message.contains("closes no block"), "{err}");
    }

    #[test]
    fn unclosed_quote_is_an_error() {
        let err = parse("x 1\nscript \"/bin/true\ninterval 1\n", "c.conf").unwrap_err();
        assert_eq!(err.loc.to_string(), "c.conf:2");
        assert!(err.message.contains("not closed"), "{err}");
    }

    #[test]
    fn stray_open_brace_is_an_error() {
        let err = parse("a {\n}\n{\n}\n", "d.conf").unwrap_err();
        assert_eq!(err.loc.to_string(), "d.conf:3");
        assert!(err.message.contains("without a keyword"), "{err}");
    }

    #[test]
    fn crlf_line_ends() {
        let s = parse("a 1\r\nb {\r\n c 2\r\n}\r\n", "k").unwrap();
        assert_eq!(words(&s[0]), ["a", "1"]);
        assert_eq!(words(&s[1].block.as_ref().unwrap()[0]), ["c", "2"]);
    }
}
