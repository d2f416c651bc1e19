//! Just enough IPv4 header parsing to hand a raw-socket datagram to the VRRP receiver: the
//! addresses (for the checksum and the sender check), the TTL and the payload.

use std::net::Ipv4Addr;

use thiserror::Error;

/// The parts of an IPv4 header VRRP cares about, and the payload after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Datagram<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub tos: u8,
    pub protocol: u8,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Ipv4Error {
    #[error("datagram of {0} bytes is shorter than an IPv4 header")]
    Truncated(usize),
    #[error("not an IPv4 header (version {0})")]
    NotIpv4(u8),
    #[error(
        "header length {header} or total length {total} does not fit the {len} bytes received"
    )]
    BadLength {
        header: usize,
        total: usize,
        len: usize,
    },
}

/// Split a received IPv4 datagram into header fields and payload. Trailing bytes beyond the total
/// length (Ethernet padding) are ignored.
pub fn parse_ipv4(buf: &[u8]) -> Result<Ipv4Datagram<'_>, Ipv4Error> {
    if buf.len() < 20 {
        return Err(Ipv4Error::Truncated(buf.len()));
    }
    if buf[0] >> 4 != 4 {
        return Err(Ipv4Error::NotIpv4(buf[0] >> 4));
    }
    let header = usize::from(buf[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if header < 20 || total < header || total > buf.len() {
        return Err(Ipv4Error::BadLength {
            header,
            total,
            len: buf.len(),
        });
    }
    Ok(Ipv4Datagram {
        src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
        dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
        ttl: buf[8],
        tos: buf[1],
        protocol: buf[9],
        payload: &buf[header..total],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_vrrp_datagram_and_rejects_short_ones() {
        let mut buf = vec![
            0x45, 0xc0, 0, 28, 0, 0, 0, 0, 255, 112, 0, 0, 10, 0, 0, 1, 224, 0, 0, 18,
        ];
        buf.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        buf.extend_from_slice(&[0, 0]); // padding
        let d = parse_ipv4(&buf).unwrap();
        assert_eq!(
            (d.src, d.dst, d.ttl, d.tos, d.protocol),
            (
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(224, 0, 0, 18),
                255,
                0xc0,
                112
            )
        );
        assert_eq!(d.payload, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(parse_ipv4(&buf[..10]), Err(Ipv4Error::Truncated(10)));
        buf[3] = 200;
        assert!(matches!(parse_ipv4(&buf), Err(Ipv4Error::BadLength { .. })));
    }
}
