//! Units and dimensions of quantities: `15T`, `16M tokens`, `80GB`, `989 TFLOP/s`.

use serde::Serialize;
use std::fmt;

/// The dimension of a quantity. A bare number is a `Count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    Count,
    Tokens,
    Steps,
    Flops,
    FlopsPerSecond,
    Bytes,
    BytesPerSecond,
    Seconds,
    Usd,
    /// A price per hour of one GPU (`gpu_hour_price = 2.5 USD/h`), held in USD per hour.
    #[serde(rename = "usd_per_hour")]
    UsdPerHr,
}

impl Dim {
    /// Dimensions where a bare number is unambiguous (`tokens = 15T`).
    pub fn accepts_bare_count(self) -> bool {
        matches!(self, Dim::Count | Dim::Tokens | Dim::Steps | Dim::Flops)
    }

    /// A unit to suggest in help text.
    pub fn example_unit(self) -> &'static str {
        match self {
            Dim::Count => "",
            Dim::Tokens => "tokens",
            Dim::Steps => "steps",
            Dim::Flops => "FLOPs",
            Dim::FlopsPerSecond => "TFLOP/s",
            Dim::Bytes => "GB",
            Dim::BytesPerSecond => "GB/s",
            Dim::Seconds => "h",
            Dim::Usd => "USD",
            Dim::UsdPerHr => "USD/h",
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dim::Count => "a count",
            Dim::Tokens => "tokens",
            Dim::Steps => "steps",
            Dim::Flops => "FLOPs",
            Dim::FlopsPerSecond => "FLOP/s",
            Dim::Bytes => "bytes",
            Dim::BytesPerSecond => "bytes/s",
            Dim::Seconds => "a duration",
            Dim::Usd => "USD",
            Dim::UsdPerHr => "USD/h",
        })
    }
}

/// Magnitude suffixes of counts (`8B` is 8e9, as model sizes are written).
const MAGNITUDES: &[(&str, f64)] = &[
    ("K", 1e3),
    ("M", 1e6),
    ("B", 1e9),
    ("T", 1e12),
    // Binary magnitudes (IEC 80000-13's prefixes): `16Mi tokens` is 2^24.
    ("Ki", 1024.0),
    ("Mi", 1_048_576.0),
    ("Gi", 1_073_741_824.0),
    ("Ti", 1_099_511_627_776.0),
];

/// `v` written with a binary magnitude when it is a whole number of one (`16Mi`), if any.
pub fn binary(v: f64) -> Option<String> {
    MAGNITUDES[4..]
        .iter()
        .rev()
        .find(|(_, m)| v >= *m && (v / m).fract() == 0.0)
        .map(|(s, m)| format!("{}{s}", v / m))
}

/// The value of one unit in base units (bytes, seconds, FLOPs, …).
fn unit(name: &str) -> Option<(f64, Dim)> {
    let si = |p: &str| match p {
        "" => Some(1.0),
        "K" => Some(1e3),
        "M" => Some(1e6),
        "G" => Some(1e9),
        "T" => Some(1e12),
        "P" => Some(1e15),
        "E" => Some(1e18),
        _ => None,
    };
    let binary = |p: &str| match p {
        "Ki" => Some(1024f64),
        "Mi" => Some(1024f64.powi(2)),
        "Gi" => Some(1024f64.powi(3)),
        "Ti" => Some(1024f64.powi(4)),
        _ => None,
    };
    let simple = match name {
        "tokens" => Some((1.0, Dim::Tokens)),
        "steps" => Some((1.0, Dim::Steps)),
        "USD" => Some((1.0, Dim::Usd)),
        "USD/h" => Some((1.0, Dim::UsdPerHr)),
        "%" => Some((0.01, Dim::Count)),
        "s" => Some((1.0, Dim::Seconds)),
        "min" => Some((60.0, Dim::Seconds)),
        "h" => Some((3600.0, Dim::Seconds)),
        "d" => Some((86400.0, Dim::Seconds)),
        _ => None,
    };
    if simple.is_some() {
        return simple;
    }
    if let Some(p) = name.strip_suffix("FLOP/s") {
        return si(p).map(|f| (f, Dim::FlopsPerSecond));
    }
    if let Some(p) = name
        .strip_suffix("FLOPs")
        .or_else(|| name.strip_suffix("FLOP"))
    {
        return si(p).map(|f| (f, Dim::Flops));
    }
    let (base, per_second) = match name.strip_suffix("/s") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let bytes = if let Some(p) = base.strip_suffix("iB") {
        binary(&format!("{p}i"))
    } else if let Some(p) = base.strip_suffix('B') {
        if p.is_empty() {
            None
        } else {
            si(p)
        }
    } else if let Some(p) = base.strip_suffix('b') {
        // Network links are quoted in bits per second.
        if p.is_empty() || !per_second {
            None
        } else {
            si(p).map(|f| f / 8.0)
        }
    } else {
        None
    };
    bytes.map(|f| {
        (
            f,
            if per_second {
                Dim::BytesPerSecond
            } else {
                Dim::Bytes
            },
        )
    })
}

/// Every unit word, for help text.
pub const UNIT_WORDS: &str =
    "tokens, steps, FLOPs, TFLOP/s, KB…PB, KiB…TiB, GB/s, TB/s, Gb/s, s, min, h, d, USD, USD/h, %";

/// Why a quantity literal could not be read.
#[derive(Debug, PartialEq)]
pub enum UnitError {
    Unknown(String),
    /// A magnitude on a unit word that does not take one (`16M GB`).
    Twice(String),
}

/// Reads `16M` + `tokens`: the number, its attached suffix, and the unit word after it.
pub fn quantity(literal: &str, unit_word: Option<&str>) -> Result<(f64, Dim), UnitError> {
    let split = literal
        .char_indices()
        .find(|&(i, c)| {
            (c.is_ascii_alphabetic() || c == '%')
                && !((c == 'e' || c == 'E')
                    && literal[i + 1..]
                        .starts_with(|d: char| d.is_ascii_digit() || d == '-' || d == '+'))
        })
        .map(|(i, _)| i)
        .unwrap_or(literal.len());
    let (number, suffix) = literal.split_at(split);
    let mut value: f64 = number
        .parse()
        .map_err(|_| UnitError::Unknown(literal.to_string()))?;
    let mut dim = Dim::Count;
    let mut magnitude = false;
    if !suffix.is_empty() {
        if let Some((_, m)) = MAGNITUDES.iter().find(|(s, _)| *s == suffix) {
            value *= m;
            magnitude = true;
        } else if suffix == "%" {
            // Divided rather than multiplied by 0.01, so that 70% is exactly 0.7.
            value /= 100.0;
        } else if let Some((f, d)) = unit(suffix) {
            value *= f;
            dim = d;
        } else {
            return Err(UnitError::Unknown(suffix.to_string()));
        }
    }
    if let Some(word) = unit_word {
        let (f, d) = unit(word).ok_or_else(|| UnitError::Unknown(word.to_string()))?;
        if dim != Dim::Count
            || (magnitude
                && !matches!(
                    d,
                    Dim::Tokens | Dim::Steps | Dim::Flops | Dim::Usd | Dim::UsdPerHr
                ))
        {
            return Err(UnitError::Twice(format!("{literal} {word}")));
        }
        value *= f;
        dim = d;
    }
    Ok((value, dim))
}

/// Formats a value in its dimension for messages: `8.03B`, `80 GB`, `16.8M tokens`.
pub fn show(value: f64, dim: Dim) -> String {
    let counted = |v: f64| -> String {
        let a = v.abs();
        // Shapes and sizes (hidden 12288, vocab 128256) read best exactly.
        if v.fract() == 0.0 && a < 1e7 {
            return format!("{v}");
        }
        // Past a thousand T the suffixes stop helping: 1e30, 9.007e15.
        if a >= 1e15 {
            return scientific(v);
        }
        let (div, suffix) = if a >= 1e12 {
            (1e12, "T")
        } else if a >= 1e9 {
            (1e9, "B")
        } else if a >= 1e6 {
            (1e6, "M")
        } else if a >= 1e4 {
            (1e3, "K")
        } else {
            (1.0, "")
        };
        format!("{}{}", trim(v / div), suffix)
    };
    match dim {
        Dim::Count => counted(value),
        Dim::Tokens => format!("{} tokens", counted(value)),
        Dim::Steps => format!("{} steps", counted(value)),
        Dim::Flops => format!("{:.3e} FLOPs", value),
        Dim::FlopsPerSecond => format!("{} TFLOP/s", trim(value / 1e12)),
        Dim::Bytes => format!("{} GB", trim(value / 1e9)),
        Dim::BytesPerSecond => format!("{} GB/s", trim(value / 1e9)),
        Dim::Seconds => format!("{} s", trim(value)),
        Dim::Usd => format!("{} USD", trim(value)),
        Dim::UsdPerHr => format!("{} USD/h", trim(value)),
    }
}

/// A number in scientific notation with at most three decimals: `1e30`, `9.007e15`.
pub fn scientific(v: f64) -> String {
    let s = format!("{v:.3e}");
    match s.split_once('e') {
        Some((mantissa, exponent)) => {
            let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
            format!("{mantissa}e{exponent}")
        }
        None => s,
    }
}

/// A number with at most three decimals and no trailing zeros.
pub fn trim(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 {
        return format!("{v:e}");
    }
    let s = format!("{:.3}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity("8B", None), Ok((8e9, Dim::Count)));
        assert_eq!(quantity("16M", Some("tokens")), Ok((16e6, Dim::Tokens)));
        // Binary magnitudes: Llama 3's "16M" batch is 2^24 tokens.
        assert_eq!(
            quantity("16Mi", Some("tokens")),
            Ok((16_777_216.0, Dim::Tokens))
        );
        assert_eq!(quantity("4Ki", None), Ok((4096.0, Dim::Count)));
        assert_eq!(binary(16_777_216.0).as_deref(), Some("16Mi"));
        assert_eq!(binary(1536.0), None); // 1.5 Ki is not a whole number of one
        assert_eq!(binary(1000.0), None);
        assert_eq!(quantity("80GB", None), Ok((80e9, Dim::Bytes)));
        assert_eq!(
            quantity("80GiB", None),
            Ok((80.0 * 1024f64.powi(3), Dim::Bytes))
        );
        assert_eq!(quantity("30d", None), Ok((30.0 * 86400.0, Dim::Seconds)));
        assert_eq!(quantity("3.8e25", Some("FLOPs")), Ok((3.8e25, Dim::Flops)));
        assert_eq!(quantity("25%", None), Ok((0.25, Dim::Count)));
        assert_eq!(
            quantity("400", Some("Gb/s")),
            Ok((50e9, Dim::BytesPerSecond))
        );
        assert_eq!(
            quantity("989", Some("TFLOP/s")),
            Ok((989e12, Dim::FlopsPerSecond))
        );
        assert_eq!(quantity("3e-4", None), Ok((3e-4, Dim::Count)));
        assert!(matches!(quantity("8Q", None), Err(UnitError::Unknown(_))));
        assert!(matches!(
            quantity("16M", Some("GB")),
            Err(UnitError::Twice(_))
        ));
    }

    /// A GPU-hour price is its own dimension: USD per hour, held as written (not per second),
    /// and never the same as a total in USD.
    #[test]
    fn price_per_hour() {
        assert_eq!(quantity("2.5", Some("USD/h")), Ok((2.5, Dim::UsdPerHr)));
        assert_eq!(quantity("2", Some("USD")), Ok((2.0, Dim::Usd)));
        assert_ne!(Dim::Usd, Dim::UsdPerHr);
        assert!(!Dim::UsdPerHr.accepts_bare_count());
        assert_eq!(show(2.5, Dim::UsdPerHr), "2.5 USD/h");
        assert_eq!(Dim::UsdPerHr.to_string(), "USD/h");
        assert_eq!(Dim::UsdPerHr.example_unit(), "USD/h");
        assert!(UNIT_WORDS.contains("USD/h"));
        assert!(matches!(
            quantity("2", Some("USD/hr")),
            Err(UnitError::Unknown(_))
        ));
        assert!(matches!(
            quantity("2GB", Some("USD/h")),
            Err(UnitError::Twice(_))
        ));
    }
}
