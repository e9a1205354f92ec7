//! Kubernetes resource quantities as admission needs them: exact values
//! (nano-units), the format they were written in, Kubernetes' addition rule
//! (a zero takes the other side's format) and canonical printing (`1500m`,
//! `2k`, `512Mi`), so messages read like `requested: requests.cpu=500m`.

use std::cmp::Ordering;
use std::fmt;

/// How a quantity prints, as `resource.Format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Decimal SI suffixes (`m`, `k`, `M`, …).
    DecimalSi,
    /// Binary SI suffixes (`Ki`, `Mi`, …).
    BinarySi,
    /// Exponent notation (`1e3`).
    DecimalExponent,
}

/// A parsed quantity: value in 10⁻⁹ units plus its format.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

/// A string that is not a Kubernetes quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}"
)]
pub struct InvalidQuantity(pub String);

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// Zero in decimal SI (`"0"`).
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSi,
    };

    /// The integer `n` in decimal SI.
    pub fn from_int(n: i64) -> Self {
        Quantity {
            nanos: i128::from(n) * NANO,
            format: Format::DecimalSi,
        }
    }

    /// Parses `"250m"`, `"1.5"`, `"2Gi"`, `"1e3"`; precision beyond nano-units
    /// rounds up, as Kubernetes does.
    pub fn parse(s: &str) -> Result<Self, InvalidQuantity> {
        let bad = || InvalidQuantity(s.to_string());
        let t = s.trim();
        let (negative, body) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let split = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (num, suffix) = body.split_at(split);
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(bad());
        }
        // (multiplier numerator as a power of ten or of two)
        let (exp10, exp2, format): (i32, u32, Format) = match suffix {
            "" => (0, 0, Format::DecimalSi),
            "n" => (-9, 0, Format::DecimalSi),
            "u" => (-6, 0, Format::DecimalSi),
            "m" => (-3, 0, Format::DecimalSi),
            "k" => (3, 0, Format::DecimalSi),
            "M" => (6, 0, Format::DecimalSi),
            "G" => (9, 0, Format::DecimalSi),
            "T" => (12, 0, Format::DecimalSi),
            "P" => (15, 0, Format::DecimalSi),
            "E" => (18, 0, Format::DecimalSi),
            "Ki" => (0, 10, Format::BinarySi),
            "Mi" => (0, 20, Format::BinarySi),
            "Gi" => (0, 30, Format::BinarySi),
            "Ti" => (0, 40, Format::BinarySi),
            "Pi" => (0, 50, Format::BinarySi),
            "Ei" => (0, 60, Format::BinarySi),
            s if s.starts_with(['e', 'E']) => {
                let e: i32 = s[1..].parse().map_err(|_| bad())?;
                if !(-30..=30).contains(&e) {
                    return Err(bad());
                }
                (e, 0, Format::DecimalExponent)
            }
            _ => return Err(bad()),
        };
        if int.len() + frac.len() > 30 {
            return Err(bad());
        }
        let digits = format!("{int}{frac}");
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| bad())?
        };
        // value = mantissa × 10^(exp10 - frac_len) × 2^exp2, in nanos: × 10^9.
        let scale10 = exp10 - frac.len() as i32 + 9;
        let mut numer = mantissa.checked_mul(1_i128 << exp2).ok_or_else(bad)?;
        let mut denom: i128 = 1;
        if scale10 >= 0 {
            numer = numer
                .checked_mul(10_i128.checked_pow(scale10 as u32).ok_or_else(bad)?)
                .ok_or_else(bad)?;
        } else {
            denom = 10_i128.checked_pow((-scale10) as u32).ok_or_else(bad)?;
        }
        let nanos = (numer + denom - 1) / denom;
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// True below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The value in thousandths, rounded up (`MilliValue()`).
    pub fn milli_value(&self) -> i128 {
        let (q, r) = (self.nanos / 1_000_000, self.nanos % 1_000_000);
        if r > 0 { q + 1 } else { q }
    }

    /// `self + other`, keeping `self`'s format unless `self` is zero
    /// (`Quantity.Add`).
    pub fn add(&self, other: &Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos + other.nanos,
            format: if self.nanos == 0 {
                other.format
            } else {
                self.format
            },
        }
    }

    /// `self - other` in `self`'s format.
    pub fn sub(&self, other: &Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos - other.nanos,
            format: self.format,
        }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    /// The canonical form (`Quantity.String()`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.abs();
        let mut format = self.format;
        if format == Format::BinarySi && (abs < 1024 * NANO || abs % NANO != 0) {
            format = Format::DecimalSi;
        }
        if format == Format::BinarySi {
            let mut v = abs / NANO;
            let mut i = 0;
            while i < 6 && v % 1024 == 0 {
                v /= 1024;
                i += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i];
            return write!(f, "{sign}{v}{suffix}");
        }
        // Strip trailing zeros, then step down to a multiple of three.
        let mut mantissa = abs;
        let mut exp: i32 = -9;
        while mantissa % 10 == 0 && exp < 18 {
            mantissa /= 10;
            exp += 1;
        }
        while exp.rem_euclid(3) != 0 {
            mantissa *= 10;
            exp -= 1;
        }
        if format == Format::DecimalExponent {
            return if exp == 0 {
                write!(f, "{sign}{mantissa}")
            } else {
                write!(f, "{sign}{mantissa}e{exp}")
            };
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        write!(f, "{sign}{mantissa}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).expect(s)
    }

    #[test]
    fn parses_exactly_and_rejects_garbage() {
        assert_eq!(q("250m").milli_value(), 250);
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q(".5").milli_value(), 500);
        assert_eq!(q("1Ki").milli_value(), 1_024_000);
        assert_eq!(q("1e3").milli_value(), 1_000_000);
        assert_eq!(q("100u").milli_value(), 1, "rounds up");
        assert_eq!(q("-2").milli_value(), -2000);
        for bad in ["", "x", "1Qi", "1..2", "m", "1e", "."] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prints_canonically_like_kubernetes() {
        let cases = [
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("0.5", "500m"),
            ("2000", "2k"),
            ("1500", "1500"),
            ("1024Mi", "1Gi"),
            ("512Mi", "512Mi"),
            ("1536Mi", "1536Mi"),
            ("100Ki", "100Ki"),
            ("1G", "1G"),
            ("1e3", "1e3"),
            ("0", "0"),
            ("0Mi", "0"),
            ("100u", "100u"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn addition_keeps_the_left_format_unless_zero() {
        assert_eq!(Quantity::ZERO.add(&q("64Mi")).to_string(), "64Mi");
        assert_eq!(q("64Mi").add(&q("64Mi")).to_string(), "128Mi");
        assert_eq!(q("100m").add(&q("900m")).to_string(), "1");
        assert_eq!(q("1").add(&q("1Ki")).to_string(), "1025");
        assert!(q("1") < q("1001m"));
        assert_eq!(q("1"), q("1000m"));
    }
}
