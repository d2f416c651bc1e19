//! Durations as written in the file: `"100ms"`, `"1s"`, `"1.5s"`, `"2m"`, `"1m30s"`.
//!
//! One strict grammar (no spaces, no bare numbers, millisecond precision) so that a value means the same
//! thing to every reader; rendering produces the shortest form that parses back to the same value.

use std::time::Duration;

/// The accepted form, quoted in error messages.
pub const ACCEPTED_FORM: &str =
    "a number with a unit and no space: \"100ms\", \"1s\", \"1.5s\", \"2m\", \"1h\" (units ms, s, m, h)";

/// Parses a duration string; the error says what is wrong in words.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration".to_string());
    }
    if text.chars().any(char::is_whitespace) {
        return Err("a duration has no spaces".to_string());
    }
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut total_nanos: u128 = 0;
    while pos < bytes.len() {
        let start = pos;
        while pos < bytes.len() && (bytes[pos].is_ascii_digit() || bytes[pos] == b'.') {
            pos += 1;
        }
        let number = &text[start..pos];
        let unit_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_alphabetic() {
            pos += 1;
        }
        let unit = &text[unit_start..pos];
        if number.is_empty() {
            return Err(format!("expected a number before {unit:?}"));
        }
        let unit_nanos: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("{number:?} has no unit")),
            other => return Err(format!("unknown unit {other:?}")),
        };
        total_nanos = total_nanos
            .checked_add(scaled(number, unit_nanos)?)
            .ok_or_else(|| "duration too large".to_string())?;
    }
    if total_nanos % 1_000_000 != 0 {
        return Err("durations have millisecond precision".to_string());
    }
    let millis = u64::try_from(total_nanos / 1_000_000).map_err(|_| "duration too large")?;
    Ok(Duration::from_millis(millis))
}

/// `number` (digits with at most one '.') times `unit_nanos`, exactly.
fn scaled(number: &str, unit_nanos: u128) -> Result<u128, String> {
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
        return Err(format!("{number:?} is not a number"));
    }
    if int_part.len() + frac_part.len() > 20 {
        return Err("duration too large".to_string());
    }
    let digits: String = format!("{int_part}{frac_part}");
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits
            .parse()
            .map_err(|_| format!("{number:?} is not a number"))?
    };
    let divisor = 10u128.pow(frac_part.len() as u32);
    let product = mantissa
        .checked_mul(unit_nanos)
        .ok_or_else(|| "duration too large".to_string())?;
    if product % divisor != 0 {
        return Err("durations have millisecond precision".to_string());
    }
    Ok(product / divisor)
}

/// Renders a duration in the form [`parse_duration`] reads back: whole seconds as `"Ns"`, else `"Nms"`.
pub fn format_duration(d: Duration) -> String {
    let millis = d.as_millis();
    if millis % 1000 == 0 {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.01s"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "1",
            "1 sec",
            "1sec",
            "s",
            "1.2.3s",
            "1.5ms",
            "-1s",
            "1S",
            "1s ",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rendering_round_trips() {
        for ms in [0u64, 10, 100, 999, 1000, 1500, 40_950, 120_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
    }
}
