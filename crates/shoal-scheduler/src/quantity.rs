//! Reading resource quantities (`500m`, `1.5`, `256Mi`, `1e3`) as the scheduler counts them:
//! CPU in millicores and everything else in whole units, both rounded up as Kubernetes'
//! `MilliValue` and `Value` round.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// `quantity` in thousandths of a unit (millicores for CPU), rounded up; None when it does not
/// parse or is negative.
pub fn millis(quantity: &Quantity) -> Option<i64> {
    scaled(&quantity.0, 3)
}

/// `quantity` in whole units (bytes for memory, a count for pods), rounded up; None when it
/// does not parse or is negative.
pub fn units(quantity: &Quantity) -> Option<i64> {
    scaled(&quantity.0, 0)
}

/// `text` × 10^`extra_ten_exponent`, rounded up to an integer (saturating at `i64::MAX`).
fn scaled(text: &str, extra_ten_exponent: i32) -> Option<i64> {
    let text = text.trim().strip_prefix('+').unwrap_or(text.trim());
    let number_end = text.find(|character: char| !(character.is_ascii_digit() || character == '.'));
    let (number, suffix) = text.split_at(number_end.unwrap_or(text.len()));
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let (ten_exponent, two_exponent) = suffix_exponents(suffix)?;
    // The value is digits × 10^(ten − fraction digits) × 2^two; work in u128 with the decimal
    // exponent kept apart until the end, so nothing is lost before rounding up.
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Some(i64::MAX);
    }
    let mut value: u128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    value = value.checked_shl(two_exponent).filter(|shifted| shifted >> two_exponent == value)?;
    let fraction_digits = i32::try_from(fraction.len()).ok()?;
    let exponent = ten_exponent + extra_ten_exponent - fraction_digits;
    let result = if exponent >= 0 {
        let factor = 10u128.checked_pow(exponent.unsigned_abs());
        factor.and_then(|factor| value.checked_mul(factor)).unwrap_or(u128::MAX)
    } else {
        match 10u128.checked_pow(exponent.unsigned_abs()) {
            Some(divisor) => value.div_ceil(divisor),
            None => u128::from(value != 0),
        }
    };
    Some(i64::try_from(result).unwrap_or(i64::MAX))
}

/// The powers of ten and of two a quantity's suffix stands for.
fn suffix_exponents(suffix: &str) -> Option<(i32, u32)> {
    Some(match suffix {
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
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            (exponent.parse().ok()?, 0)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected_millis: Option<i64>, expected_units: Option<i64>) {
        let quantity = Quantity(text.to_owned());
        assert_eq!(millis(&quantity), expected_millis, "millis of {text}");
        assert_eq!(units(&quantity), expected_units, "units of {text}");
    }

    // Suffixes, fractions and exponents read as Kubernetes reads them, rounding up.
    #[test]
    fn quantities_read_as_kubernetes_reads_them() {
        check("1", Some(1_000), Some(1));
        check("500m", Some(500), Some(1));
        check("1.5", Some(1_500), Some(2));
        check("0.1", Some(100), Some(1));
        check("100n", Some(1), Some(1));
        check("0", Some(0), Some(0));
        check("256Mi", Some(268_435_456_000), Some(268_435_456));
        check("1Gi", Some(1_073_741_824_000), Some(1_073_741_824));
        check("1G", Some(1_000_000_000_000), Some(1_000_000_000));
        check("1e3", Some(1_000_000), Some(1_000));
        check("2E", Some(i64::MAX), Some(2_000_000_000_000_000_000));
        check("1Ei", Some(i64::MAX), Some(1_152_921_504_606_846_976));
        check("+3", Some(3_000), Some(3));
    }

    #[test]
    fn malformed_or_negative_quantities_are_rejected() {
        for text in ["", "-1", "abc", "1.2.3", "1Qi", ".", "1e", "1e1000"] {
            check(text, None, None);
        }
    }
}
