//! resource.Quantity as the controllers compute with it: a quantity's value in thousandths
//! (Go's `Quantity.MilliValue`, rounded up as it rounds), and thousandths written back in the
//! canonical decimal form the API server would store (`250m`, `2`, `64k`, `128M`).

pub use shoal_quantity::format_milli;

/// The value of the quantity `text` times a thousand, rounded away from zero; None when it is
/// not a quantity. Saturates at the bounds of `i64`.
pub fn milli_value(text: &str) -> Option<i64> {
    shoal_quantity::Quantity::parse(text).map(shoal_quantity::Quantity::milli_value)
}
