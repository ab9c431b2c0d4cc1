//! Resource quantities as the scheduler counts them: CPU in millicores and everything else in
//! whole units, both rounded up as Kubernetes' `MilliValue` and `Value` round; a negative
//! quantity counts as none.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// `quantity` in thousandths of a unit (millicores for CPU), rounded up; None when it does not
/// parse or is negative.
pub fn millis(quantity: &Quantity) -> Option<i64> {
    non_negative(quantity).map(shoal_quantity::Quantity::milli_value)
}

/// `quantity` in whole units (bytes for memory, a count for pods), rounded up; None when it
/// does not parse or is negative.
pub fn units(quantity: &Quantity) -> Option<i64> {
    non_negative(quantity).map(shoal_quantity::Quantity::value)
}

fn non_negative(quantity: &Quantity) -> Option<shoal_quantity::Quantity> {
    shoal_quantity::Quantity::parse(&quantity.0).filter(|parsed| !parsed.is_negative())
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
        check("1e1000", Some(i64::MAX), Some(i64::MAX));
        check("+3", Some(3_000), Some(3));
    }

    #[test]
    fn malformed_or_negative_quantities_are_rejected() {
        for text in ["", "-1", "abc", "1.2.3", "1Qi", ".", "1e"] {
            check(text, None, None);
        }
    }
}
