//! The handful of PostgreSQL protocol 3.0 messages the startup probe exchanges, as pure byte
//! functions: building a StartupMessage and a Terminate, cutting backend messages out of a buffer,
//! and reading AuthenticationRequest and ErrorResponse bodies. No IO; every length read from the
//! network is checked, so no input can panic or make us allocate more than [`MAX_MESSAGE_LEN`].

use std::fmt;

/// Protocol version 3.0 as sent in a StartupMessage (major 3 in the high 16 bits).
pub const PROTOCOL_3_0: u32 = 3 << 16;

/// Largest backend message we accept during startup. Authentication requests, errors and
/// parameter statuses are far smaller; anything bigger is not a sane PostgreSQL server.
pub const MAX_MESSAGE_LEN: usize = 32 * 1024;

/// Terminate: tag `X`, length 4, no body.
pub const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];

/// Backend message tags the probe looks at.
pub mod tag {
    /// AuthenticationRequest (Ok, password, SASL, ...).
    pub const AUTHENTICATION: u8 = b'R';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const READY_FOR_QUERY: u8 = b'Z';
}

/// AuthenticationRequest code meaning "authenticated".
pub const AUTH_OK: u32 = 0;

/// Bytes that are not the protocol we expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("a startup parameter contains a NUL byte")]
    NulInParameter,
    #[error("message length {0} is below the minimum of 4")]
    LengthTooSmall(u32),
    #[error("message length {len} exceeds the limit of {MAX_MESSAGE_LEN} bytes")]
    TooLong { len: usize },
    #[error("malformed {what}")]
    Malformed { what: &'static str },
}

/// Builds a protocol 3.0 StartupMessage carrying `params` (name, value) in order.
pub fn startup_message(params: &[(&str, &str)]) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    for (name, value) in params {
        if name.is_empty() || name.contains('\0') || value.contains('\0') {
            return Err(WireError::NulInParameter);
        }
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let len = body.len() + 4;
    if len > MAX_MESSAGE_LEN {
        return Err(WireError::TooLong { len });
    }
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    Ok(msg)
}

/// One backend message: its tag and its body (without tag and length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub tag: u8,
    pub body: &'a [u8],
}

/// Cuts the first complete backend message out of `buf`.
///
/// `Ok(None)` means more bytes are needed; `Ok(Some((frame, used)))` gives the message and how
/// many bytes of `buf` it took. A length field below 4 or above [`MAX_MESSAGE_LEN`] is an error as
/// soon as the 5-byte header is in.
pub fn split_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, WireError> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if len < 4 {
        return Err(WireError::LengthTooSmall(len));
    }
    let len = len as usize;
    if len > MAX_MESSAGE_LEN {
        return Err(WireError::TooLong { len });
    }
    let total = 1 + len;
    match buf.get(5..total) {
        Some(body) => Ok(Some((
            Frame {
                tag: header[0],
                body,
            },
            total,
        ))),
        None => Ok(None),
    }
}

/// The request code of an AuthenticationRequest body (0 = Ok, 3 = cleartext password, 5 = MD5,
/// 10 = SASL, ...).
pub fn auth_request_code(body: &[u8]) -> Result<u32, WireError> {
    match body.get(..4) {
        Some(code) => Ok(u32::from_be_bytes([code[0], code[1], code[2], code[3]])),
        None => Err(WireError::Malformed {
            what: "authentication request",
        }),
    }
}

/// A five-character SQLSTATE code, e.g. `57P03`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState([u8; 5]);

impl SqlState {
    /// WarehousePG / Greenplum "mirror ready": a standby that is alive and replaying WAL.
    pub const MIRROR_READY: SqlState = SqlState(*b"57M02");
    /// "cannot connect now": starting up, shutting down, in crash recovery, or a standby that does
    /// not accept connections.
    pub const CANNOT_CONNECT_NOW: SqlState = SqlState(*b"57P03");
    /// A write attempted in a read-only transaction (a standby).
    pub const READ_ONLY_SQL_TRANSACTION: SqlState = SqlState(*b"25006");

    /// Accepts exactly five ASCII letters or digits.
    pub fn parse(s: &str) -> Option<SqlState> {
        let bytes: [u8; 5] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(u8::is_ascii_alphanumeric)
            .then_some(SqlState(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII alphanumerics are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("?????")
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlState({})", self.as_str())
    }
}

/// The fields of an ErrorResponse (or NoticeResponse) the probe uses. Texts are decoded lossily:
/// before a session exists they are in the server's encoding and possibly translated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// `S`: localized severity.
    pub severity: Option<String>,
    /// `V`: severity, never localized (FATAL, ERROR, ...).
    pub severity_raw: Option<String>,
    /// `C`: the SQLSTATE as sent.
    pub code: Option<String>,
    /// `M`: primary message.
    pub message: Option<String>,
    /// `D`: detail.
    pub detail: Option<String>,
    /// `H`: hint.
    pub hint: Option<String>,
}

impl ErrorFields {
    /// Parses an ErrorResponse body: fields of one type byte and a NUL-terminated string, ended
    /// by a zero byte. Unknown field types are skipped; a body without its terminators is an
    /// error.
    pub fn parse(body: &[u8]) -> Result<ErrorFields, WireError> {
        let malformed = WireError::Malformed {
            what: "error response",
        };
        let mut fields = ErrorFields::default();
        let mut rest = body;
        loop {
            let (&kind, after) = rest.split_first().ok_or(malformed.clone())?;
            if kind == 0 {
                return Ok(fields);
            }
            let nul = after
                .iter()
                .position(|&b| b == 0)
                .ok_or(malformed.clone())?;
            let value = String::from_utf8_lossy(&after[..nul]).into_owned();
            rest = &after[nul + 1..];
            let slot = match kind {
                b'S' => &mut fields.severity,
                b'V' => &mut fields.severity_raw,
                b'C' => &mut fields.code,
                b'M' => &mut fields.message,
                b'D' => &mut fields.detail,
                b'H' => &mut fields.hint,
                _ => continue,
            };
            *slot = Some(value);
        }
    }

    /// The SQLSTATE, if the `C` field is present and well formed.
    pub fn sqlstate(&self) -> Option<SqlState> {
        self.code.as_deref().and_then(SqlState::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_message_is_byte_exact() {
        let msg = startup_message(&[("user", "pg"), ("database", "db")]).unwrap();
        // length 4 + version 4 + "user\0pg\0" 8 + "database\0db\0" 12 + terminator 1 = 29
        let mut expected = vec![0, 0, 0, 29, 0, 3, 0, 0];
        expected.extend_from_slice(b"user\0pg\0database\0db\0\0");
        assert_eq!(msg, expected);
        assert_eq!(msg.len(), 29);
    }

    #[test]
    fn startup_message_without_parameters_is_the_version_and_a_terminator() {
        assert_eq!(startup_message(&[]).unwrap(), [0, 0, 0, 9, 0, 3, 0, 0, 0]);
    }

    #[test]
    fn startup_message_refuses_nul_bytes_and_empty_names() {
        assert_eq!(
            startup_message(&[("user", "a\0b")]),
            Err(WireError::NulInParameter)
        );
        assert_eq!(
            startup_message(&[("", "x")]),
            Err(WireError::NulInParameter)
        );
        let huge = "x".repeat(MAX_MESSAGE_LEN);
        assert!(matches!(
            startup_message(&[("user", &huge)]),
            Err(WireError::TooLong { .. })
        ));
    }

    #[test]
    fn terminate_is_tag_and_length_only() {
        assert_eq!(TERMINATE, *b"X\0\0\0\x04");
    }

    #[test]
    fn split_frame_waits_for_complete_messages() {
        let auth_ok = [b'R', 0, 0, 0, 8, 0, 0, 0, 0];
        for cut in 0..auth_ok.len() {
            assert_eq!(split_frame(&auth_ok[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = auth_ok.to_vec();
        two.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
        let (frame, used) = split_frame(&two).unwrap().unwrap();
        assert_eq!(frame.tag, b'R');
        assert_eq!(frame.body, &[0, 0, 0, 0]);
        assert_eq!(used, 9);
        let (frame, used) = split_frame(&two[used..]).unwrap().unwrap();
        assert_eq!((frame.tag, frame.body, used), (b'Z', &b"I"[..], 6));
    }

    #[test]
    fn split_frame_rejects_impossible_lengths() {
        assert_eq!(
            split_frame(&[b'E', 0, 0, 0, 3]),
            Err(WireError::LengthTooSmall(3))
        );
        assert_eq!(
            split_frame(&[b'E', 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(WireError::TooLong {
                len: u32::MAX as usize
            })
        );
        assert_eq!(
            split_frame(&[b'E', 0, 0, 0x80, 5]),
            Err(WireError::TooLong { len: 0x8005 })
        );
        // An empty body is fine for the splitter.
        let (frame, used) = split_frame(&[b'X', 0, 0, 0, 4]).unwrap().unwrap();
        assert_eq!((frame.body.len(), used), (0, 5));
    }

    #[test]
    fn auth_request_codes() {
        assert_eq!(auth_request_code(&[0, 0, 0, 0]), Ok(AUTH_OK));
        assert_eq!(auth_request_code(&[0, 0, 0, 10, b'S']), Ok(10));
        assert!(auth_request_code(&[0, 0, 5]).is_err());
    }

    #[test]
    fn error_fields_of_a_57p03_response() {
        let body = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is not accepting connections\0\
                     DHot standby mode is disabled.\0Fpostmaster.c\0L2453\0RProcessStartupPacket\0\0";
        let f = ErrorFields::parse(body).unwrap();
        assert_eq!(f.severity.as_deref(), Some("FATAL"));
        assert_eq!(f.severity_raw.as_deref(), Some("FATAL"));
        assert_eq!(f.sqlstate(), Some(SqlState::CANNOT_CONNECT_NOW));
        assert_eq!(
            f.message.as_deref(),
            Some("the database system is not accepting connections")
        );
        assert_eq!(f.detail.as_deref(), Some("Hot standby mode is disabled."));
        assert_eq!(f.hint, None);
    }

    #[test]
    fn error_fields_of_a_translated_57m02_response() {
        let body =
            "SSCHWERWIEGEND\0VFATAL\0C57M02\0Mdas Datenbanksystem ist im Wiederherstellungsmodus\0\
                    Dletzter wiederhergestellter Datensatz bei 0/3000148\0HHinweis\0\0";
        let f = ErrorFields::parse(body.as_bytes()).unwrap();
        assert_eq!(f.severity.as_deref(), Some("SCHWERWIEGEND"));
        assert_eq!(f.severity_raw.as_deref(), Some("FATAL"));
        assert_eq!(f.sqlstate(), Some(SqlState::MIRROR_READY));
        assert_eq!(f.hint.as_deref(), Some("Hinweis"));
    }

    #[test]
    fn error_fields_reject_truncated_bodies() {
        for body in [&b""[..], b"C57P03", b"C57P03\0", b"SFATAL\0M"] {
            assert!(ErrorFields::parse(body).is_err(), "{body:?}");
        }
        // Empty, then unknown fields only: fine, just nothing known.
        assert_eq!(ErrorFields::parse(b"\0"), Ok(ErrorFields::default()));
        assert_eq!(
            ErrorFields::parse(b"Zwhatever\0q\0\0").unwrap(),
            ErrorFields::default()
        );
        // Invalid UTF-8 is kept lossily.
        let f = ErrorFields::parse(b"M\xff\xfe\0\0").unwrap();
        assert_eq!(f.message.as_deref(), Some("\u{fffd}\u{fffd}"));
    }

    #[test]
    fn sqlstate_parsing_is_strict() {
        assert_eq!(SqlState::parse("28000").unwrap().as_str(), "28000");
        assert_eq!(SqlState::parse("57M02"), Some(SqlState::MIRROR_READY));
        for bad in ["", "2800", "280000", "28 00", "2800é"] {
            assert_eq!(SqlState::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn no_byte_sequence_panics_the_decoders() {
        // A cheap exhaustive-ish sweep: every short prefix of a pseudo-random stream.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut bytes = Vec::new();
        for _ in 0..4096 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push((state >> 24) as u8);
        }
        for start in 0..256 {
            for len in [0, 1, 4, 5, 9, 64, 700] {
                let slice = &bytes[start..(start + len).min(bytes.len())];
                let _ = split_frame(slice);
                let _ = ErrorFields::parse(slice);
                let _ = auth_request_code(slice);
            }
        }
    }
}
