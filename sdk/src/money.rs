//! Exact money arithmetic.
//!
//! Invariant: money never passes through `f64`. Amounts decode from the JSON numbers' own
//! digits into [`Decimal`], and [`money`] fixes them to exactly two decimal places (rounding
//! half away from zero), so `116.8` is written as `116.80`.

use rust_decimal::RoundingStrategy;

pub use rust_decimal::Decimal;

/// `amount` rounded half away from zero to 2 decimal places and written with exactly 2
/// (`116.8` → `116.80`, `0.125` → `0.13`, `-0.125` → `-0.13`).
pub fn money(amount: Decimal) -> Decimal {
    let mut rounded = amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    // Near Decimal's 28-digit limit, rescale keeps the largest scale that fits.
    rounded.rescale(2);
    rounded
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn money_of(text: &str) -> String {
        money(Decimal::from_str(text).unwrap()).to_string()
    }

    #[test]
    fn rescales_to_two_places() {
        assert_eq!(money_of("116.8"), "116.80");
        assert_eq!(money_of("99"), "99.00");
        assert_eq!(money_of("79.47"), "79.47");
        assert_eq!(money_of("0"), "0.00");
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(money_of("0.125"), "0.13");
        assert_eq!(money_of("-0.125"), "-0.13");
        assert_eq!(money_of("0.135"), "0.14");
        assert_eq!(money_of("2.674999"), "2.67");
    }

    #[test]
    fn decimal_products_are_exact() {
        let price: Decimal = serde_json::from_str("8.9").unwrap();
        assert_eq!(money(price * Decimal::from(2)).to_string(), "17.80");
        let tiny: Decimal = serde_json::from_str("0.1").unwrap();
        assert_eq!((tiny + tiny + tiny).to_string(), "0.3");
    }
}
