//! resource.Quantity as the controllers compute with it: a quantity's value in thousandths
//! (Go's `Quantity.MilliValue`, rounded up as it rounds), and thousandths written back in the
//! canonical decimal form the API server would store (`250m`, `2`, `64k`, `128M`).

/// The value of the quantity `text` (`^[+-]?[0-9.]+([eEinumkKMGTP]*[-+]?[0-9]*)$`) times a
/// thousand, rounded up; None when it is not a quantity. Saturates at the bounds of `i64`.
pub fn milli_value(text: &str) -> Option<i64> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = unsigned.find(|character: char| !(character.is_ascii_digit() || character == '.'));
    let (number, suffix) = unsigned.split_at(number_end.unwrap_or(unsigned.len()));
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let (ten_exponent, two_exponent) = exponents(suffix)?;
    let mut mantissa: i128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa.saturating_mul(10).saturating_add(i128::from(digit - b'0'));
    }
    let fraction_digits = i64::try_from(fraction.len()).ok()?;
    // value × 1000 = mantissa × 2^two_exponent × 10^(ten_exponent + 3 − fraction digits)
    let mut value = mantissa.saturating_mul(1_i128 << two_exponent);
    let scale = ten_exponent.saturating_add(3).saturating_sub(fraction_digits);
    if scale >= 0 {
        for _ in 0..scale.min(40) {
            value = value.saturating_mul(10);
        }
    } else {
        let divisor = 10_i128.checked_pow(u32::try_from(-scale).ok()?).unwrap_or(i128::MAX);
        // Rounded away from zero, as Go's ScaledValue rounds.
        value = value / divisor + i128::from(value % divisor != 0);
    }
    let value = if negative { -value } else { value };
    Some(i64::try_from(value).unwrap_or(if negative { i64::MIN } else { i64::MAX }))
}

/// The powers of ten and two a suffix stands for.
fn exponents(suffix: &str) -> Option<(i64, u32)> {
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
            if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            (exponent.parse::<i64>().unwrap_or(0).clamp(-1_000, 1_000), 0)
        }
    })
}

/// `milli` thousandths as Go's `NewMilliQuantity(milli, DecimalSI)` prints: thousandths with
/// `m` when not whole, else the largest SI suffix that keeps the number whole.
pub fn format_milli(milli: i64) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let mut value = milli / 1000;
    let mut suffixes = ["", "k", "M", "G", "T", "P", "E"].iter();
    let mut suffix = suffixes.next().expect("a first suffix");
    while value != 0 && value % 1000 == 0 {
        let Some(next) = suffixes.next() else { break };
        value /= 1000;
        suffix = next;
    }
    format!("{value}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Decimal, binary and exponent suffixes, fractions, and rounding up of what is finer
    // than a thousandth.
    #[test]
    fn milli_values() {
        let cases = [
            ("250m", Some(250)),
            ("1", Some(1_000)),
            ("1.5", Some(1_500)),
            ("12345n", Some(1)),
            ("12345678n", Some(13)),
            ("1000000n", Some(1)),
            ("64Mi", Some(64 * 1024 * 1024 * 1000)),
            ("2048Ki", Some(2048 * 1024 * 1000)),
            ("1k", Some(1_000_000)),
            ("1e3", Some(1_000_000)),
            ("0", Some(0)),
            ("-2", Some(-2_000)),
            ("", None),
            ("abc", None),
            ("1.2.3", None),
            ("5x", None),
        ];
        for (text, expected) in cases {
            assert_eq!(milli_value(text), expected, "{text}");
        }
    }

    // The canonical decimal forms Go writes for milli quantities.
    #[test]
    fn formatted() {
        let cases = [
            (250, "250m"),
            (1_500, "1500m"),
            (2_000, "2"),
            (0, "0"),
            (64_000_000, "64k"),
            (52_428_800_000, "52428800"),
        ];
        for (milli, expected) in cases {
            assert_eq!(format_milli(milli), expected, "{milli}");
        }
    }
}
