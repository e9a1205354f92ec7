//! Parsing Kubernetes resource quantities (`100m`, `500Mi`, `1.5`, `2e3`)
//! into integers, rounding up as `resource.Quantity.MilliValue()` /
//! `Value()` do. Exact integer arithmetic, no floating point.

/// A quantity that does not follow Kubernetes' quantity grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?}")]
pub struct InvalidQuantity(pub String);

/// A parsed quantity: `mantissa × 10^exp10 × 2^exp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    mantissa: i128,
    exp10: i32,
    exp2: u32,
}

fn parse(s: &str) -> Result<Parsed, InvalidQuantity> {
    let bad = || InvalidQuantity(s.to_string());
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut negative = false;
    if let Some(&c) = bytes.first()
        && (c == b'+' || c == b'-')
    {
        negative = c == b'-';
        i = 1;
    }
    let mut mantissa: i128 = 0;
    let mut digits = 0usize;
    let mut frac_digits = 0i32;
    let mut seen_dot = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() {
            // Beyond 36 significant digits the value cannot matter for scheduling;
            // reject rather than overflow.
            if mantissa != 0 || c != b'0' {
                digits += 1;
            }
            if digits > 36 {
                return Err(bad());
            }
            mantissa = mantissa * 10 + i128::from(c - b'0');
            if seen_dot {
                frac_digits += 1;
            }
        } else if c == b'.' && !seen_dot {
            seen_dot = true;
        } else {
            break;
        }
        i += 1;
    }
    let number_len = i - usize::from(bytes.first().is_some_and(|c| *c == b'+' || *c == b'-'));
    if number_len == 0 || (seen_dot && number_len == 1) {
        return Err(bad());
    }
    let suffix = &s[i..];
    let (exp10, exp2) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other if other.starts_with(['e', 'E']) => {
            let exp: i32 = other[1..].parse().map_err(|_| bad())?;
            if !(-30..=30).contains(&exp) {
                return Err(bad());
            }
            (exp, 0)
        }
        _ => return Err(bad()),
    };
    Ok(Parsed {
        mantissa: if negative { -mantissa } else { mantissa },
        exp10: exp10 - frac_digits,
        exp2,
    })
}

/// `ceil(q × 10^scale)` saturated to the `i64` range.
fn scaled(p: Parsed, scale: i32) -> i64 {
    let mut value = p.mantissa;
    for _ in 0..p.exp2 {
        value = match value.checked_mul(2) {
            Some(v) => v,
            None => return saturate(value),
        };
    }
    let exp = p.exp10 + scale;
    if exp >= 0 {
        for _ in 0..exp {
            value = match value.checked_mul(10) {
                Some(v) => v,
                None => return saturate(value),
            };
        }
        saturate(value)
    } else {
        let mut divisor: i128 = 1;
        for _ in 0..(-exp) {
            divisor = match divisor.checked_mul(10) {
                Some(d) => d,
                // The divisor outgrew any possible mantissa: the value is
                // in (-1, 1); round away from zero towards +inf.
                None => return i64::from(value > 0),
            };
        }
        let q = value.div_euclid(divisor);
        let r = value.rem_euclid(divisor);
        saturate(if r == 0 { q } else { q + 1 })
    }
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v > 0 { i64::MAX } else { i64::MIN })
}

/// The quantity in thousandths, rounded up (`Quantity.MilliValue()`), e.g.
/// `"100m"` → 100, `"1"` → 1000.
pub fn milli_value(s: &str) -> Result<i64, InvalidQuantity> {
    parse(s.trim()).map(|p| scaled(p, 3))
}

/// The quantity rounded up to an integer (`Quantity.Value()`), e.g.
/// `"500Mi"` → 524288000, `"100m"` → 1.
pub fn value(s: &str) -> Result<i64, InvalidQuantity> {
    parse(s.trim()).map(|p| scaled(p, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_in_millis() {
        assert_eq!(milli_value("100m"), Ok(100));
        assert_eq!(milli_value("1"), Ok(1000));
        assert_eq!(milli_value("0.5"), Ok(500));
        assert_eq!(milli_value(".5"), Ok(500));
        assert_eq!(milli_value("2."), Ok(2000));
        assert_eq!(milli_value("1.0001"), Ok(1001), "rounds up");
        assert_eq!(milli_value("1500u"), Ok(2), "1.5m rounds up to 2m");
        assert_eq!(milli_value("4"), Ok(4000));
        assert_eq!(milli_value("0"), Ok(0));
        assert_eq!(milli_value("+3"), Ok(3000));
        assert_eq!(milli_value("-1"), Ok(-1000));
        assert_eq!(milli_value("1e3"), Ok(1_000_000));
        assert_eq!(milli_value("1E-3"), Ok(1));
        assert_eq!(milli_value("1n"), Ok(1));
        assert_eq!(milli_value("1k"), Ok(1_000_000));
    }

    #[test]
    fn memory_quantities_in_bytes() {
        assert_eq!(value("500Mi"), Ok(500 * 1024 * 1024));
        assert_eq!(value("32Gi"), Ok(32 * 1024 * 1024 * 1024));
        assert_eq!(value("1Ki"), Ok(1024));
        assert_eq!(value("1.5Ki"), Ok(1536));
        assert_eq!(value("128974848"), Ok(128_974_848));
        assert_eq!(value("129e6"), Ok(129_000_000));
        assert_eq!(value("129M"), Ok(129_000_000));
        assert_eq!(value("1Ti"), Ok(1 << 40));
        assert_eq!(value("1Ei"), Ok(1 << 60));
        assert_eq!(value("100m"), Ok(1), "fractions round up");
        assert_eq!(value("110"), Ok(110));
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(value("16Ei"), Ok(i64::MAX));
        assert_eq!(milli_value("9E"), Ok(i64::MAX));
        assert_eq!(value("1e30"), Ok(i64::MAX));
        assert_eq!(value("1e-30"), Ok(1));
    }

    #[test]
    fn malformed_quantities_are_rejected() {
        for bad in [
            "", "m", "1x", "1.2.3", "Mi", ".", "-", "1 Mi", "1e", "1e1.5", "1mi", "abc", "1e99",
        ] {
            assert!(value(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(value(" 1 "), Ok(1), "surrounding space is trimmed");
    }
}
