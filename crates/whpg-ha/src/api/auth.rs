//! The bearer token that guards the mutating endpoints: loaded once at start-up from
//! `api.token_file`, compared in constant time.
//!
//! The daemon refuses to start when the file can be read by anyone but its owner, so a token
//! that leaked through file permissions is never accepted.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// A secret token. `Debug` does not show it.
#[derive(Clone)]
pub struct Token {
    value: Vec<u8>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Token {
    /// The token as the daemon loads it: the file must exist, be owned-only (no group or other
    /// permission bits) and hold a non-empty token (surrounding whitespace is ignored).
    pub fn load_for_daemon(path: &Path) -> anyhow::Result<Token> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("api.token_file = {:?}: cannot read it", path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "api.token_file = {:?} is accessible by group or others (mode {mode:04o}); \
                 the token would not be secret: run `chmod 600 {}`",
                path,
                path.display()
            );
        }
        Token::read(path)
    }

    /// The token as a client reads it (no permission check: the daemon makes that one).
    pub fn read(path: &Path) -> anyhow::Result<Token> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("api.token_file = {:?}: cannot read it", path))?;
        let value = text.trim();
        if value.is_empty() {
            bail!(
                "api.token_file = {:?} is empty; write a long random token into it",
                PathBuf::from(path)
            );
        }
        Ok(Token {
            value: value.as_bytes().to_vec(),
        })
    }

    pub fn expose(&self) -> &str {
        // Built from a `str` in `read`.
        std::str::from_utf8(&self.value).unwrap_or_default()
    }

    /// Whether the `Authorization` header value is `Bearer <this token>`.
    pub fn accepts_header(&self, header: Option<&[u8]>) -> bool {
        let Some(header) = header else { return false };
        match header.strip_prefix(b"Bearer ") {
            Some(presented) => constant_time_eq(presented.trim_ascii(), &self.value),
            None => false,
        }
    }
}

/// Equality whose running time depends only on the lengths, not on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for (i, x) in b.iter().enumerate() {
        let y = a.get(i).copied().unwrap_or(!*x);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_matches_plain_equality() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"secret", b"secret"),
            (b"secret", b"secreT"),
            (b"secret", b"secret2"),
            (b"secret2", b"secret"),
            (b"", b"x"),
            (b"x", b""),
            (b"\0", b""),
            (b"abc", b"xbc"),
        ];
        for (a, b) in cases {
            assert_eq!(constant_time_eq(a, b), a == b, "{a:?} vs {b:?}");
        }
    }

    fn token_file(mode: u32, text: &str) -> (tempdir::Dir, PathBuf) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("token");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "whpg-ha-token-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_token_file_readable_by_others_is_refused_with_the_fix() {
        let (_dir, path) = token_file(0o644, "s3cret\n");
        let error = format!("{:#}", Token::load_for_daemon(&path).unwrap_err());
        assert!(error.contains("chmod 600"), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn an_owner_only_token_file_is_loaded_and_checks_bearer_headers() {
        let (_dir, path) = token_file(0o600, "s3cret\n");
        let token = Token::load_for_daemon(&path).unwrap();
        assert!(token.accepts_header(Some(b"Bearer s3cret")));
        assert!(!token.accepts_header(Some(b"Bearer s3cre")));
        assert!(!token.accepts_header(Some(b"Bearer wrong!")));
        assert!(!token.accepts_header(Some(b"s3cret")));
        assert!(!token.accepts_header(None));
        assert_eq!(format!("{token:?}"), "Token(***)");
    }

    #[test]
    fn an_empty_token_file_is_refused() {
        let (_dir, path) = token_file(0o600, " \n");
        assert!(Token::load_for_daemon(&path).is_err());
    }
}
