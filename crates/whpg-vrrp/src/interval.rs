//! Advert intervals in centiseconds, the unit VRRPv3 carries (v2 carries whole seconds).

use std::fmt;
use std::time::Duration;

/// An advert interval. v3 carries 12 bits of centiseconds (10 ms .. 40.95 s); v2 carries 1..=255
/// whole seconds, stored here as centiseconds so both versions share one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval(u16);

impl Interval {
    /// Largest interval VRRPv3 can carry (12 bits).
    pub const V3_MAX_CENTIS: u16 = 0x0fff;

    pub const fn from_centis(centis: u16) -> Interval {
        Interval(centis)
    }

    pub const fn from_secs(secs: u8) -> Interval {
        Interval(secs as u16 * 100)
    }

    /// The interval for `duration`, if it is a whole number of centiseconds that fits in 16 bits.
    pub fn from_duration(duration: Duration) -> Option<Interval> {
        let nanos = duration.as_nanos();
        if nanos % 10_000_000 != 0 {
            return None;
        }
        u16::try_from(nanos / 10_000_000).ok().map(Interval)
    }

    pub const fn centis(self) -> u16 {
        self.0
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0) * 10)
    }

    /// The v2 wire value: whole seconds from 1 to 255, or `None` when v2 cannot carry it.
    pub fn whole_seconds(self) -> Option<u8> {
        if self.0 == 0 || self.0 % 100 != 0 {
            return None;
        }
        u8::try_from(self.0 / 100).ok()
    }

    /// Whether v3 can carry it: 1..=4095 centiseconds.
    pub fn fits_v3(self) -> bool {
        (1..=Self::V3_MAX_CENTIS).contains(&self.0)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 100 == 0 {
            write!(f, "{}s", self.0 / 100)
        } else {
            write!(f, "{}ms", u32::from(self.0) * 10)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(
            Interval::from_duration(Duration::from_millis(100)),
            Some(Interval::from_centis(10))
        );
        assert_eq!(Interval::from_duration(Duration::from_millis(105)), None);
        assert_eq!(Interval::from_secs(1).whole_seconds(), Some(1));
        assert_eq!(Interval::from_centis(150).whole_seconds(), None);
        assert_eq!(Interval::from_centis(25600).whole_seconds(), None);
        assert!(Interval::from_centis(4095).fits_v3());
        assert!(!Interval::from_centis(4096).fits_v3());
        assert_eq!(Interval::from_centis(10).to_string(), "100ms");
        assert_eq!(Interval::from_secs(3).to_string(), "3s");
    }
}
