//! Byte sizes as people write and read them: "7 GiB" in hardware profiles,
//! "1.25 GiB" in plans and messages.

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Parses "7 GiB", "512MiB", "4096 B" or a plain byte count.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (write e.g. \"7 GiB\" or a byte count)"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" => 1024.0,
        "mib" => MIB as f64,
        "gib" => GIB as f64,
        "tib" => (GIB as f64) * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{text}' (B, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    let bytes = value * scale;
    if !(bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64) {
        return Err(format!("size '{text}' is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// Bytes for humans: "1.25 GiB", "3.0 MiB", "512 B".
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    let mib = MIB as f64;
    if b >= 1024.0 * mib {
        format!("{:.2} GiB", b / 1024.0 / mib)
    } else if b >= mib {
        format!("{:.1} MiB", b / mib)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("7 GiB").unwrap(), 7_516_192_768);
        assert_eq!(parse_size("512MiB").unwrap(), 536_870_912);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 1_610_612_736);
        assert_eq!(parse_size("3 KiB").unwrap(), 3072);
        assert_eq!(parse_size("2 TiB").unwrap(), 2_199_023_255_552);
        assert_eq!(parse_size(" 4096 B ").unwrap(), 4096);
        assert_eq!(parse_size("12").unwrap(), 12);
        assert!(parse_size("7 GB").is_err());
        assert!(parse_size("-1 GiB").is_err());
        assert!(parse_size("GiB").is_err());
    }

    #[test]
    fn sizes_past_u64_are_refused() {
        // 2²⁴ TiB is 2⁶⁴ bytes, one past u64::MAX; the TiB below it fits.
        assert!(parse_size("16777216 TiB").is_err());
        assert_eq!(parse_size("16777215 TiB").unwrap(), (16_777_215u64) << 40);
    }

    #[test]
    fn bytes_read_in_the_largest_unit_they_fill() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1_048_575), "1024.0 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes((1 << 30) - (1 << 20)), "1023.0 MiB");
        assert_eq!(human_bytes(1 << 30), "1.00 GiB");
        assert_eq!(human_bytes(5 << 28), "1.25 GiB");
    }
}
