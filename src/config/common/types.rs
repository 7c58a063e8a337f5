//! Scalar config types: durations (`30s`, `5m`, `720h`) and byte sizes (`100MiB`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, de};

/// A duration written the human way: `250ms`, `30s`, `5m`, `720h`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(Duration)
            .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. 500ms, 30s, 5m or 720h"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A byte size: `1048576`, `512KiB`, `100MiB`, `1GB` (SI and IEC units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    /// A number with an optional unit: B, KB/MB/GB/TB (powers of 1000) or
    /// KiB/MiB/GiB/TiB (powers of 1024).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("invalid size {s:?}; write e.g. 512KiB, 100MiB or 1GB");
        let text = s.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().map_err(|_| err())?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "MB" => 1000u64.pow(2),
            "GB" => 1000u64.pow(3),
            "TB" => 1000u64.pow(4),
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => return Err(err()),
        };
        let bytes = number * factor as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(err());
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 100MiB, or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("30s".parse::<Duration>().unwrap().0.as_secs(), 30);
        assert_eq!("5m".parse::<Duration>().unwrap().0.as_secs(), 300);
        assert_eq!("720h".parse::<Duration>().unwrap().0.as_secs(), 720 * 3600);
        assert_eq!("250ms".parse::<Duration>().unwrap().0.as_millis(), 250);
        let err = "5 parsecs".parse::<Duration>().unwrap_err();
        assert!(err.contains("invalid duration \"5 parsecs\""), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!("100MiB".parse::<ByteSize>().unwrap().0, 100 * 1024 * 1024);
        assert_eq!("1MB".parse::<ByteSize>().unwrap().0, 1_000_000);
        assert_eq!("512KiB".parse::<ByteSize>().unwrap().0, 512 * 1024);
        assert_eq!("1.5KiB".parse::<ByteSize>().unwrap().0, 1536);
        assert_eq!("42".parse::<ByteSize>().unwrap().0, 42);
        assert_eq!(
            "lots".parse::<ByteSize>().unwrap_err(),
            "invalid size \"lots\"; write e.g. 512KiB, 100MiB or 1GB"
        );
        assert!("10 parsecs".parse::<ByteSize>().is_err());
    }
}
