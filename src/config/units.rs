//! Sizes ("100 GiB", "500MB", plain bytes) and durations ("500ms", "30s", "1d"): parsing with
//! messages that say what would be valid, and compact formatting for summaries.

use std::time::Duration;

use super::raw::NumOrStr;

/// Units a size may carry; matched case-insensitively. KB..TB are powers of 1000,
/// KiB..TiB powers of 1024 (so "50 GB" and "50 GiB" differ by 7%, as operators expect).
const SIZE_UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

const SIZE_HINT: &str = "a whole number of bytes, or a number with a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. \"100 GiB\", \"500MB\", \"1.5 TiB\"";

/// Most decimal places a size may have; enough for any sane value and keeps the
/// integer arithmetic below far from u128 overflow.
const MAX_DECIMALS: usize = 9;

/// Parse a size written as an integer (bytes) or a string; decimals are rounded to whole bytes.
pub fn parse_size(value: &NumOrStr) -> Result<u64, String> {
    match value {
        NumOrStr::Int(n) => {
            u64::try_from(*n).map_err(|_| format!("invalid size {n}: must not be negative"))
        }
        NumOrStr::Float(f) => Err(format!(
            "invalid size {f}: write a fractional size as a string with a unit, e.g. \"{f} GiB\""
        )),
        NumOrStr::Str(text) => parse_size_str(text),
    }
}

fn parse_size_str(text: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("invalid size \"{text}\"{why} (expected {SIZE_HINT})");
    let trimmed = text.trim();
    let number_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let unit = unit.trim_start();
    let multiplier = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|&(_, multiplier)| multiplier)
            .ok_or_else(|| bad(&format!(": unknown unit \"{unit}\"")))?
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    if whole.is_empty() || fraction.contains('.') || (number.contains('.') && fraction.is_empty()) {
        return Err(bad(""));
    }
    if fraction.len() > MAX_DECIMALS {
        return Err(bad(&format!(": at most {MAX_DECIMALS} decimal places")));
    }
    let too_large = || format!("invalid size \"{text}\": too large (the most is 16 EiB)");
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| bad(""))?
    };
    let scale = 10u128.pow(fraction.len() as u32);
    // (whole + fraction/scale) * multiplier, rounded half up, all in integers.
    let scaled = whole
        .checked_mul(scale)
        .and_then(|v| v.checked_add(fraction_value))
        .and_then(|v| v.checked_mul(u128::from(multiplier)))
        .ok_or_else(too_large)?;
    let bytes = (scaled + scale / 2) / scale;
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Human form of a byte count: the largest unit that shows it exactly with at most two
/// decimals ("1.5 TiB", "500 MB"), else two decimals of a binary unit plus the exact count.
pub fn format_size(bytes: u64) -> String {
    const UNITS: &[(&str, u64)] = &[
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("TB", 1_000_000_000_000),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KiB", 1 << 10),
        ("KB", 1_000),
    ];
    for &(name, unit) in UNITS {
        let hundredths = u128::from(bytes) * 100;
        if bytes >= unit && hundredths % u128::from(unit) == 0 {
            let hundredths = hundredths / u128::from(unit);
            let (whole, fraction) = (hundredths / 100, hundredths % 100);
            return match fraction {
                0 => format!("{whole} {name}"),
                f if f % 10 == 0 => format!("{whole}.{} {name}", f / 10),
                f => format!("{whole}.{f:02} {name}"),
            };
        }
    }
    match UNITS[..3].iter().find(|&&(_, unit)| bytes >= unit) {
        Some(&(name, unit)) => format!("{:.2} {name} ({bytes} bytes)", bytes as f64 / unit as f64),
        None => format!("{bytes} B"),
    }
}

const DURATION_HINT: &str = "e.g. \"500ms\", \"30s\", \"15m\", \"4h\", \"1d\"";

/// Parse a duration string. A bare number is rejected: "15" could mean seconds or minutes.
pub fn parse_duration(value: &NumOrStr) -> Result<Duration, String> {
    let bare = |shown: String, n: &str| {
        format!(
            "invalid duration {shown} (a number needs a unit: \"{n}s\", \"{n}m\", \"{n}h\", ...)"
        )
    };
    match value {
        NumOrStr::Int(n) => Err(bare(n.to_string(), &n.to_string())),
        NumOrStr::Float(f) => Err(bare(f.to_string(), &f.to_string())),
        NumOrStr::Str(text) => {
            let trimmed = text.trim();
            if !trimmed.is_empty() && trimmed.parse::<f64>().is_ok() {
                return Err(bare(format!("\"{text}\""), trimmed));
            }
            humantime::parse_duration(trimmed)
                .map_err(|err| format!("invalid duration \"{text}\": {err} ({DURATION_HINT})"))
        }
    }
}

/// Compact human form of a duration, e.g. "4h", "1day", "500ms".
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(text: &str) -> Result<u64, String> {
        parse_size(&NumOrStr::Str(text.to_owned()))
    }

    #[test]
    fn sizes_decimal_and_binary_units() {
        assert_eq!(size("100 GiB"), Ok(100 * (1 << 30)));
        assert_eq!(size("500MB"), Ok(500_000_000));
        assert_eq!(size("1 KB"), Ok(1000));
        assert_eq!(size("1 KiB"), Ok(1024));
        assert_eq!(size("1kib"), Ok(1024), "units are case-insensitive");
        assert_eq!(size("2 TB"), Ok(2_000_000_000_000));
        assert_eq!(size("1 TiB"), Ok(1 << 40));
        assert_eq!(size("12 B"), Ok(12));
        assert_eq!(
            size("12"),
            Ok(12),
            "a unitless string is bytes, like an integer"
        );
        assert_eq!(parse_size(&NumOrStr::Int(4096)), Ok(4096));
        assert_eq!(parse_size(&NumOrStr::Int(0)), Ok(0));
    }

    #[test]
    fn sizes_with_decimals_round_to_bytes() {
        assert_eq!(size("1.5 TiB"), Ok(3 << 39));
        assert_eq!(size("0.5 KB"), Ok(500));
        assert_eq!(size("1.5 B"), Ok(2), "half rounds up");
        assert_eq!(size("1.4 B"), Ok(1));
        assert_eq!(size("0.001 KiB"), Ok(1), "1.024 bytes");
        assert_eq!(size("2.25 GB"), Ok(2_250_000_000));
    }

    #[test]
    fn sizes_reject_garbage_negative_and_overflow() {
        for bad in [
            "", "GiB", "1.2.3 GB", "1. GB", ".5 GB", "10 XB", "10 G", "-5 GB", "ten",
        ] {
            let err = size(bad).expect_err(bad);
            assert!(err.contains("KiB"), "{bad}: hint missing in {err}");
        }
        assert!(
            parse_size(&NumOrStr::Int(-1))
                .unwrap_err()
                .contains("negative")
        );
        assert!(size("16777216 TiB").unwrap_err().contains("too large"));
        assert!(
            size("99999999999999999999999999 B")
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(size("16777215 TiB"), Ok(16_777_215 << 40));
        assert!(
            size("1.0000000001 GB")
                .unwrap_err()
                .contains("decimal places")
        );
        assert!(
            parse_size(&NumOrStr::Float(1.5))
                .unwrap_err()
                .contains("\"1.5 GiB\"")
        );
    }

    #[test]
    fn size_formatting() {
        assert_eq!(format_size(100 << 30), "100 GiB");
        assert_eq!(format_size(1 << 40), "1 TiB");
        assert_eq!(format_size(500_000_000), "500 MB");
        assert_eq!(format_size(12), "12 B");
        assert_eq!(format_size(3 << 39), "1.5 TiB");
        assert_eq!(format_size(1_500_000_000), "1.5 GB");
        assert_eq!(format_size(2_250_000_000), "2.25 GB");
        assert_eq!(format_size(2048), "2 KiB");
        assert_eq!(format_size((1 << 20) + 1), "1.00 MiB (1048577 bytes)");
    }

    fn duration(text: &str) -> Result<Duration, String> {
        parse_duration(&NumOrStr::Str(text.to_owned()))
    }

    #[test]
    fn durations_with_units() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(duration("4h"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn bare_numbers_are_rejected_with_a_hint() {
        let err = duration("15").unwrap_err();
        assert!(err.contains("a number needs a unit: \"15s\""), "{err}");
        let err = parse_duration(&NumOrStr::Int(15)).unwrap_err();
        assert!(err.contains("\"15s\""), "{err}");
        let err = duration("fast").unwrap_err();
        assert!(err.contains("\"30s\""), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn whole_sizes_multiply_exactly(whole in 0u64..(1 << 23), unit in 0usize..SIZE_UNITS.len()) {
            let (name, multiplier) = SIZE_UNITS[unit];
            proptest::prop_assert_eq!(size(&format!("{whole} {name}")), Ok(whole * multiplier));
            proptest::prop_assert_eq!(size(&format!("{whole}{}", name.to_uppercase())), Ok(whole * multiplier));
        }

        #[test]
        fn integers_are_bytes(bytes in 0i64..i64::MAX) {
            proptest::prop_assert_eq!(parse_size(&NumOrStr::Int(bytes)), Ok(bytes as u64));
        }

        #[test]
        fn exact_formats_parse_back(bytes in 1u64..(1 << 50)) {
            let shown = format_size(bytes);
            if !shown.contains("bytes") {
                proptest::prop_assert_eq!(size(&shown), Ok(bytes), "{}", shown);
            }
        }
    }

    #[test]
    fn duration_formatting() {
        assert_eq!(format_duration(Duration::from_secs(4 * 3600)), "4h");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
    }
}
