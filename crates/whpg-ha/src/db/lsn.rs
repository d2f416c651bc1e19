//! WAL positions (`pg_lsn`): parsing the `X/X` text form the server prints, finding one inside a
//! free-text message, and comparing them. Nothing here talks to a server.

use std::fmt;
use std::str::FromStr;

/// A WAL location: the 64-bit byte position the server prints as two hex halves, `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// Text that is not an `X/X` WAL location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a WAL location (expected two hex numbers of 1 to 8 digits, like 0/3000148)"
)]
pub struct LsnParseError {
    pub text: String,
}

fn hex_half(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

impl Lsn {
    /// The first `X/X` WAL location in `text` that stands alone (not glued to other letters or
    /// digits), e.g. from the detail "last replayed record at 0/3000148". Only the shape is
    /// matched, never the words around it, because server messages are translated.
    pub fn find_in(text: &str) -> Option<Lsn> {
        let bytes = text.as_bytes();
        let standalone = |i: usize| i >= bytes.len() || !bytes[i].is_ascii_alphanumeric();
        for (slash, _) in text.match_indices('/') {
            let start = bytes[..slash]
                .iter()
                .rposition(|b| !b.is_ascii_hexdigit())
                .map_or(0, |p| p + 1);
            let end = bytes[slash + 1..]
                .iter()
                .position(|b| !b.is_ascii_hexdigit())
                .map_or(bytes.len(), |p| slash + 1 + p);
            let before_ok = start == 0 || standalone(start - 1);
            if !before_ok || !standalone(end) {
                continue;
            }
            if let Ok(lsn) = text[start..end].parse() {
                return Some(lsn);
            }
        }
        None
    }
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Lsn, LsnParseError> {
        let err = || LsnParseError {
            text: s.chars().take(64).collect(),
        };
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let hi = hex_half(hi).ok_or_else(err)?;
        let lo = hex_half(lo).ok_or_else(err)?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_server_form() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn, Lsn(0x16_B374_D848));
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        assert_eq!("FFFFFFFF/FFFFFFFF".parse::<Lsn>().unwrap(), Lsn(u64::MAX));
        assert!(Lsn(0x1_0000_0000) > Lsn(0xFFFF_FFFF));
    }

    #[test]
    fn rejects_malformed_locations() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0x1/2",
            "1/2/3",
            "123456789/0",
            "g/0",
            "1 / 2",
            "-1/0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn finds_the_location_in_a_detail_message() {
        assert_eq!(
            Lsn::find_in("last replayed record at 0/3000148"),
            Some(Lsn(0x300_0148))
        );
        // Greenplum appends the server version, which must not confuse the search.
        let gp = "last replayed record at 0/2C0000A8\n- VERSION: PostgreSQL 12.12 (WarehousePG 7.2 \
                  build commit:4f1adf8e) on x86_64-unknown-linux-gnu, compiled on Dec 18 2020 22:31:16";
        assert_eq!(Lsn::find_in(gp), Some(Lsn(0x2C00_00A8)));
        // A translated message: only the shape counts.
        assert_eq!(
            Lsn::find_in("letzter wiederhergestellter Datensatz bei 1F/A0"),
            Some(Lsn(0x1F_0000_00A0))
        );
        assert_eq!(Lsn::find_in("(0/16B3748)."), Some(Lsn(0x16B_3748)));
    }

    #[test]
    fn ignores_slashes_that_are_not_locations() {
        assert_eq!(
            Lsn::find_in("waiting for distributed transaction recovery"),
            None
        );
        assert_eq!(Lsn::find_in("path /data/coordinator/gpseg-1"), None);
        assert_eq!(Lsn::find_in("x0/1 and 0/1y"), None);
        assert_eq!(Lsn::find_in("123456789/1"), None);
        assert_eq!(Lsn::find_in("x/y/z then 2/3"), Some(Lsn(0x2_0000_0003)));
        assert_eq!(Lsn::find_in("/"), None);
        assert_eq!(Lsn::find_in("é/é 0/1"), Some(Lsn(1)));
    }
}
