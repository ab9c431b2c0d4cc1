//! Kubernetes resource quantities (`500m`, `1.5`, `256Mi`, `1e3`), read once for every part of
//! shoal that computes with them: the API server's validation, the scheduler's and the
//! autoscaler's arithmetic, the agent's downward API.
//!
//! A quantity is held in nano-units, the finest precision Kubernetes keeps in practice; what
//! is finer is rounded away from zero, as Go's `resource.Quantity` rounds when it scales, and
//! values beyond `i128` (about 10^29 units) saturate.

/// A parsed quantity, in nano-units (10^-9 of its unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

/// Nanos in one unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// Nanos in one thousandth.
const NANOS_PER_MILLI: i128 = 1_000_000;
/// Decimal exponents beyond this only saturate or round to a nano, so larger ones are clamped
/// here before any arithmetic.
const TEN_EXPONENT_MAX: i64 = 1_000;

impl Quantity {
    /// Reads `text` as Kubernetes does (`^[+-]?[0-9.]+([eEinumkKMGTP]*[-+]?[0-9]*)$`, after
    /// trimming surrounding spaces as its JSON decoding does); `None` when it is no quantity.
    pub fn parse(text: &str) -> Option<Quantity> {
        let text = text.trim();
        let (negative, unsigned) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let number_end = unsigned.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return None;
        }
        let (ten_exponent, two_exponent) = suffix_exponents(suffix)?;
        let mut mantissa: i128 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa.saturating_mul(10).saturating_add(i128::from(digit - b'0'));
        }
        let fraction_digits = i64::try_from(fraction.len()).unwrap_or(i64::MAX);
        // nanos = mantissa × 2^two_exponent × 10^scale
        let scale = ten_exponent.saturating_add(9).saturating_sub(fraction_digits);
        let mut nanos = mantissa.saturating_mul(1i128 << two_exponent);
        if scale >= 0 {
            for _ in 0..scale.min(40) {
                nanos = nanos.saturating_mul(10);
            }
        } else {
            nanos = divide_away_from_zero(nanos, 10i128.checked_pow(u32::try_from(-scale).ok()?));
        }
        Some(Quantity { nanos: if negative { -nanos } else { nanos } })
    }

    pub fn from_milli(milli: i64) -> Quantity {
        Quantity { nanos: i128::from(milli) * NANOS_PER_MILLI }
    }

    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// Thousandths (millicores for CPU), rounded away from zero, saturating at `i64`'s range:
    /// Go's `MilliValue`.
    pub fn milli_value(self) -> i64 {
        saturate(divide_away_from_zero(self.nanos, Some(NANOS_PER_MILLI)))
    }

    /// Whole units (bytes for memory, a count for pods), rounded away from zero, saturating:
    /// Go's `Value`.
    pub fn value(self) -> i64 {
        saturate(divide_away_from_zero(self.nanos, Some(NANOS_PER_UNIT)))
    }

    pub fn is_negative(self) -> bool {
        self.nanos < 0
    }

    pub fn is_integer(self) -> bool {
        self.nanos % NANOS_PER_UNIT == 0
    }
}

/// `value / divisor` rounded away from zero; a divisor too large for `i128` leaves only the
/// sign of a non-zero value.
fn divide_away_from_zero(value: i128, divisor: Option<i128>) -> i128 {
    match divisor {
        Some(divisor) => value / divisor + value.signum() * i128::from(value % divisor != 0),
        None => value.signum(),
    }
}

fn saturate(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// The powers of ten and of two a quantity's suffix stands for.
fn suffix_exponents(suffix: &str) -> Option<(i64, u32)> {
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
            let huge = if exponent.starts_with('-') { -TEN_EXPONENT_MAX } else { TEN_EXPONENT_MAX };
            (exponent.parse::<i64>().unwrap_or(huge).clamp(-TEN_EXPONENT_MAX, TEN_EXPONENT_MAX), 0)
        }
    })
}

/// `milli` thousandths as Go's `NewMilliQuantity(milli, DecimalSI)` prints them: thousandths
/// with `m` when not whole, else the largest SI suffix that keeps the number whole.
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

    fn milli_and_units(text: &str) -> Option<(i64, i64)> {
        Quantity::parse(text).map(|quantity| (quantity.milli_value(), quantity.value()))
    }

    // Suffixes, fractions and exponents read as Kubernetes reads them, rounding away from
    // zero what is finer than the unit asked for, saturating what is too large.
    #[test]
    fn quantities_read_as_kubernetes_reads_them() {
        let cases = [
            ("1", (1_000, 1)),
            ("500m", (500, 1)),
            ("1.5", (1_500, 2)),
            ("0.1", (100, 1)),
            ("100n", (1, 1)),
            ("12345678n", (13, 1)),
            ("0", (0, 0)),
            ("256Mi", (268_435_456_000, 268_435_456)),
            ("2048Ki", (2048 * 1024 * 1000, 2048 * 1024)),
            ("1G", (1_000_000_000_000, 1_000_000_000)),
            ("1k", (1_000_000, 1_000)),
            ("1e3", (1_000_000, 1_000)),
            ("2E", (i64::MAX, 2_000_000_000_000_000_000)),
            ("1Ei", (i64::MAX, 1_152_921_504_606_846_976)),
            ("1e1000", (i64::MAX, i64::MAX)),
            ("1e-1000", (1, 1)),
            ("+3", (3_000, 3)),
            (" 2 ", (2_000, 2)),
            ("-2", (-2_000, -2)),
            ("-1.5", (-1_500, -2)),
        ];
        for (text, expected) in cases {
            assert_eq!(milli_and_units(text), Some(expected), "{text}");
        }
        assert_eq!(Quantity::parse("1Gi").map(Quantity::nanos), Some(1_073_741_824_000_000_000));
        assert_eq!(Quantity::parse("500m"), Quantity::parse("0.5"));
        assert!(Quantity::parse("1e3") > Quantity::parse("999"));
        assert!(Quantity::parse("2").is_some_and(Quantity::is_integer));
        assert!(Quantity::parse("2.5").is_some_and(|quantity| !quantity.is_integer()));
        assert_eq!(Quantity::from_milli(250), Quantity::parse("250m").expect("parses"));
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for text in ["", "abc", "1.2.3", "1Qi", ".", "1e", "5x", "12x", "--1", "1 m"] {
            assert_eq!(Quantity::parse(text), None, "{text}");
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
