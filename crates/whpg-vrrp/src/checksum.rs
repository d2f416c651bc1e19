//! The Internet checksum (RFC 1071) and the IP pseudo-headers VRRPv3 sums over.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::packet::IP_PROTOCOL;

/// Ones' complement of the ones' complement sum of `data` taken as big-endian 16-bit words.
/// Summing a packet that carries a correct checksum gives 0.
pub fn internet(data: &[u8]) -> u16 {
    finish(sum_words(0, data))
}

/// Checksum over the IPv4 pseudo-header (source, destination, zero, protocol, length) and `data`.
pub fn with_pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, data: &[u8]) -> u16 {
    let mut sum = sum_words(0, &src.octets());
    sum = sum_words(sum, &dst.octets());
    sum += u32::from(IP_PROTOCOL);
    sum += data.len() as u32;
    finish(sum_words(sum, data))
}

/// Checksum over the IPv6 pseudo-header (RFC 8200 §8.1) and `data`.
pub fn with_pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, data: &[u8]) -> u16 {
    let mut sum = sum_words(0, &src.octets());
    sum = sum_words(sum, &dst.octets());
    sum += data.len() as u32;
    sum += u32::from(IP_PROTOCOL);
    finish(sum_words(sum, data))
}

/// Add `data` to a running 32-bit sum; an odd trailing byte is padded with zero.
fn sum_words(mut sum: u32, data: &[u8]) -> u32 {
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
        // Fold early so the sum never overflows, however long the input.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn finish(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2, so the checksum is its complement.
        assert_eq!(
            internet(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(
            internet(&[0x12, 0x34, 0x56]),
            internet(&[0x12, 0x34, 0x56, 0x00])
        );
    }

    #[test]
    fn a_checksummed_buffer_sums_to_zero() {
        let mut data = vec![0x31, 51, 100, 1, 0, 100, 0, 0, 10, 0, 0, 100];
        let sum = with_pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(224, 0, 0, 18),
            &data,
        );
        data[6..8].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            with_pseudo_header_v4(
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(224, 0, 0, 18),
                &data
            ),
            0
        );
    }
}
