//! RFC 5798 §6.1 timer arithmetic: Skew_Time and Master_Down_Interval.

use std::time::Duration;

use crate::packet::Version;
use crate::Interval;

/// Skew_Time: how much longer a lower-priority backup waits, so the highest one takes over first.
/// v2 (RFC 3768): `(256 - priority) / 256` seconds. v3: `(256 - priority) * Master_Adver_Interval / 256`.
pub fn skew_time(version: Version, master_interval: Interval, priority: u8) -> Duration {
    let weight = 256 - u64::from(priority);
    let base_micros = match version {
        Version::V2 => 1_000_000,
        Version::V3 => u64::from(master_interval.centis()) * 10_000,
    };
    Duration::from_micros(weight * base_micros / 256)
}

/// Master_Down_Interval: `3 * Master_Adver_Interval + Skew_Time`.
pub fn master_down_interval(version: Version, master_interval: Interval, priority: u8) -> Duration {
    master_interval.as_duration() * 3 + skew_time(version, master_interval, priority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_from_the_seed_and_the_fast_profile() {
        // vrrp-facts: v2 at 1 s, priority 98 -> 3.617 s; v3 at 100 ms, priority 98 -> 0.362 s.
        let v2 = master_down_interval(Version::V2, Interval::from_secs(1), 98);
        assert_eq!(v2.as_micros(), 3_617_187);
        let v3 = master_down_interval(Version::V3, Interval::from_centis(10), 98);
        assert_eq!(v3.as_micros(), 361_718);
        assert_eq!(
            skew_time(Version::V3, Interval::from_centis(10), 255).as_micros(),
            390
        );
        assert_eq!(
            skew_time(Version::V2, Interval::from_secs(1), 1).as_micros(),
            996_093
        );
    }

    #[test]
    fn higher_priority_waits_less() {
        for version in [Version::V2, Version::V3] {
            let i = Interval::from_centis(100);
            assert!(master_down_interval(version, i, 200) < master_down_interval(version, i, 100));
        }
    }
}
