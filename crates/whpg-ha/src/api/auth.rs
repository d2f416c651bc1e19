//! The bearer token that guards the mutating endpoints: loaded once at start-up from
//! `api.token_file`, compared in constant time.
//!
//! The daemon refuses to start when the token could have leaked or be guessed: a file that is a
//! symlink, not a regular file, owned by another user than the daemon's, readable by group or
//! others, or holding fewer than [`MIN_TOKEN_LEN`] characters.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The shortest token the daemon accepts (`openssl rand -hex 32` makes 64 characters).
pub const MIN_TOKEN_LEN: usize = 32;
/// A token file larger than this is not a token.
const MAX_TOKEN_FILE: u64 = 4096;

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
    /// The token as the daemon loads it: the file itself (no symlink), a regular file owned by
    /// the daemon's user with no group or other permission bits, holding a token of at least
    /// [`MIN_TOKEN_LEN`] characters (surrounding whitespace is ignored).
    pub fn load_for_daemon(path: &Path) -> anyhow::Result<Token> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        Token::load_owned_by(path, euid)
    }

    fn load_owned_by(path: &Path, owner: u32) -> anyhow::Result<Token> {
        let shown = path.display();
        let link = std::fs::symlink_metadata(path)
            .with_context(|| format!("api.token_file = {path:?}: cannot read it"))?;
        if link.file_type().is_symlink() {
            bail!(
                "token file {shown} is a symlink: point api.token_file at the file itself \
                 (a link can be changed to point at another file)"
            );
        }
        // O_NOFOLLOW: a symlink swapped in after the check above is refused by the kernel, and
        // every later check is made on the file actually read.
        let mut file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .with_context(|| format!("api.token_file = {path:?}: cannot open it"))?;
        let meta = file
            .metadata()
            .with_context(|| format!("api.token_file = {path:?}: cannot read it"))?;
        if !meta.file_type().is_file() {
            bail!("token file {shown} is not a regular file: point api.token_file at a file");
        }
        if meta.uid() != owner {
            bail!(
                "token file {shown} is owned by uid {}, not by the daemon's user (uid {owner}): \
                 another user could change it; run `chown {owner} {shown}`",
                meta.uid()
            );
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "api.token_file = {path:?} is accessible by group or others (mode {mode:04o}); \
                 the token would not be secret: run `chmod 600 {shown}`"
            );
        }
        if meta.len() > MAX_TOKEN_FILE {
            bail!(
                "token file {shown} has {} bytes, more than {MAX_TOKEN_FILE}: it holds no token; \
                 write one line made by `openssl rand -hex 32` into it",
                meta.len()
            );
        }
        let mut text = String::new();
        file.read_to_string(&mut text)
            .with_context(|| format!("api.token_file = {path:?}: cannot read it as text"))?;
        let token = Token::parse(path, &text)?;
        let length = token.value.len();
        if length < MIN_TOKEN_LEN {
            bail!(
                "token in {shown} is {length} characters; at least {MIN_TOKEN_LEN} are needed: \
                 generate one with `openssl rand -hex 32 > {shown}`"
            );
        }
        Ok(token)
    }

    /// The token as a client reads it (the daemon makes the ownership and length checks).
    pub fn read(path: &Path) -> anyhow::Result<Token> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("api.token_file = {:?}: cannot read it", path))?;
        Token::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> anyhow::Result<Token> {
        let value = text.trim();
        if value.is_empty() {
            bail!(
                "api.token_file = {:?} is empty; write a long random token into it \
                 (`openssl rand -hex 32`)",
                PathBuf::from(path)
            );
        }
        if value.bytes().any(|b| !b.is_ascii_graphic()) {
            bail!(
                "api.token_file = {:?}: the token must be one word of printable ASCII \
                 (no spaces or line breaks inside); generate one with `openssl rand -hex 32`",
                PathBuf::from(path)
            );
        }
        Ok(Token {
            value: value.as_bytes().to_vec(),
        })
    }

    pub fn expose(&self) -> &str {
        // Built from a `str` in `parse`.
        std::str::from_utf8(&self.value).unwrap_or_default()
    }

    /// Whether the `Authorization` header value is `Bearer <this token>`; the scheme name is
    /// case-insensitive (RFC 7235 section 2.1), the token is compared exactly.
    pub fn accepts_header(&self, header: Option<&[u8]>) -> bool {
        let Some(presented) = header.and_then(bearer_credentials) else {
            return false;
        };
        constant_time_eq(presented, &self.value)
    }
}

/// The credentials of an `Authorization: Bearer <credentials>` header value, `None` for another
/// scheme or none.
pub fn bearer_credentials(header: &[u8]) -> Option<&[u8]> {
    let header = header.trim_ascii();
    let space = header.iter().position(|b| *b == b' ' || *b == b'\t')?;
    let (scheme, rest) = header.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let credentials = rest.trim_ascii();
    (!credentials.is_empty()).then_some(credentials)
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
        let (_dir, path) = token_file(0o644, &format!("{GOOD}\n"));
        let error = format!("{:#}", Token::load_for_daemon(&path).unwrap_err());
        assert!(error.contains("chmod 600"), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(!error.contains(GOOD), "{error}");
    }

    const GOOD: &str = "0123456789abcdef0123456789abcdef";

    fn me() -> u32 {
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() }
    }

    #[test]
    fn an_owner_only_token_file_is_loaded_and_checks_bearer_headers() {
        let (_dir, path) = token_file(0o600, &format!("{GOOD}\n"));
        let token = Token::load_for_daemon(&path).unwrap();
        let header = |text: &str| token.accepts_header(Some(text.as_bytes()));
        assert!(header(&format!("Bearer {GOOD}")));
        assert!(!header(&format!("Bearer {}", &GOOD[1..])));
        assert!(!header(&format!("Bearer {GOOD}x")));
        assert!(!header(GOOD));
        assert!(!header(&format!("Basic {GOOD}")));
        assert!(!header("Bearer "));
        assert!(!token.accepts_header(None));
        assert_eq!(format!("{token:?}"), "Token(***)");
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_is_not() {
        let (_dir, path) = token_file(0o600, GOOD);
        let token = Token::load_for_daemon(&path).unwrap();
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let text = format!("{scheme} {GOOD}");
            assert!(token.accepts_header(Some(text.as_bytes())), "{text}");
        }
        assert!(token.accepts_header(Some(format!("  Bearer \t {GOOD} ").as_bytes())));
        let upper = format!("Bearer {}", GOOD.to_uppercase());
        assert!(!token.accepts_header(Some(upper.as_bytes())));
        assert!(!token.accepts_header(Some(format!("Bearer{GOOD}").as_bytes())));
        assert_eq!(bearer_credentials(b"Digest abc"), None);
        assert_eq!(bearer_credentials(b"bearer abc"), Some(&b"abc"[..]));
    }

    #[test]
    fn an_empty_token_file_is_refused() {
        let (_dir, path) = token_file(0o600, " \n");
        assert!(Token::load_for_daemon(&path).is_err());
    }

    #[test]
    fn a_short_token_is_refused_with_its_length_and_how_to_make_one() {
        let (_dir, path) = token_file(0o600, "twelve-chars\n");
        let error = format!("{:#}", Token::load_for_daemon(&path).unwrap_err());
        assert!(
            error.contains("is 12 characters; at least 32 are needed")
                && error.contains("openssl rand -hex 32"),
            "{error}"
        );
        assert!(!error.contains("twelve-chars"), "{error}");
    }

    #[test]
    fn a_symlinked_token_file_is_refused() {
        let (dir, target) = token_file(0o600, GOOD);
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = format!("{:#}", Token::load_for_daemon(&link).unwrap_err());
        assert!(
            error.contains("is a symlink: point api.token_file at the file itself"),
            "{error}"
        );
        Token::load_for_daemon(&target).expect("the file itself is fine");
    }

    #[test]
    fn a_token_file_owned_by_another_user_is_refused() {
        let (_dir, path) = token_file(0o600, GOOD);
        let other = me().wrapping_add(1);
        let error = format!("{:#}", Token::load_owned_by(&path, other).unwrap_err());
        assert!(
            error.contains(&format!("not by the daemon's user (uid {other})"))
                && error.contains("chown"),
            "{error}"
        );
        Token::load_owned_by(&path, me()).expect("owned by us");
    }

    #[test]
    fn a_directory_or_a_token_with_spaces_is_refused() {
        let dir = tempdir::Dir::new();
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700)).unwrap();
        let error = format!("{:#}", Token::load_for_daemon(&dir.0).unwrap_err());
        assert!(error.contains("not a regular file"), "{error}");
        let (_dir, path) = token_file(0o600, &format!("{GOOD} {GOOD}"));
        let error = format!("{:#}", Token::load_for_daemon(&path).unwrap_err());
        assert!(error.contains("one word"), "{error}");
    }
}
