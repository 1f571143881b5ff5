//! Instants and calendar days, in the units the WIT contract uses.
//!
//! Invariants: a [`Timestamp`] is microseconds since 1970-01-01T00:00:00Z (UTC, no time zone
//! kept), a [`Date`] is days since 1970-01-01. Parsing accepts any RFC 3339 offset and
//! normalizes to UTC; sub-microsecond digits are truncated. Nothing here reads the clock:
//! projections take their times from the events, so a rebuild yields the same rows.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// An instant, in microseconds since the Unix epoch (UTC).
///
/// Deserializes from an RFC 3339 / ISO-8601 string such as `2026-11-22T10:15:30.123Z` and
/// serializes back to one (`Z`, with as many fraction digits as needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// The instant `millis` milliseconds after the epoch (e.g. a Kafka record timestamp).
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis.saturating_mul(1000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 instant, e.g. `2026-11-22T10:15:30.123Z` or `2026-11-22T11:15:30+01:00`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let parsed = DateTime::parse_from_rfc3339(text).map_err(|e| {
            Error::new(format!("invalid timestamp `{text}` ({e}): expected RFC 3339, e.g. 2026-11-22T10:15:30.123Z"))
        })?;
        Ok(Self(parsed.timestamp_micros()))
    }

    /// The UTC calendar day this instant falls on.
    pub const fn date(self) -> Date {
        // Euclidean division: an instant before the epoch belongs to the day it starts in.
        Date(self.0.div_euclid(MICROS_PER_DAY) as i32)
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Self::parse(text)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with a `Z`, fraction digits only when needed: `2026-11-20T23:59:59.999Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DateTime::<Utc>::from_timestamp_micros(self.0) {
            Some(at) => f.write_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => write!(f, "{}us", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(de::Error::custom)
    }
}

/// A calendar day, in days since 1970-01-01.
///
/// Deserializes from and serializes to `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(i32);

impl Date {
    /// The day `days` days after 1970-01-01.
    pub const fn from_days(days: i32) -> Self {
        Self(days)
    }

    /// The proleptic Gregorian day `year`-`month`-`day`, if it exists.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        let date = NaiveDate::from_ymd_opt(year, month, day)?;
        Some(Self(date.signed_duration_since(NaiveDate::default()).num_days() as i32))
    }

    /// Days since 1970-01-01.
    pub const fn as_days(self) -> i32 {
        self.0
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = || Error::new(format!("invalid date `{text}`: expected YYYY-MM-DD"));
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| invalid())?;
        Self::from_ymd(date.year(), date.month(), date.day()).ok_or_else(invalid)
    }

    fn naive(self) -> Option<NaiveDate> {
        NaiveDate::default().checked_add_signed(chrono::TimeDelta::try_days(i64::from(self.0))?)
    }
}

impl FromStr for Date {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Self::parse(text)
    }
}

impl fmt::Display for Date {
    /// `YYYY-MM-DD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.naive() {
            Some(date) => write!(f, "{:04}-{:02}-{:02}", date.year(), date.month(), date.day()),
            None => write!(f, "{}d", self.0),
        }
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offsets_to_micros() {
        let t = Timestamp::parse("2026-11-22T10:15:30.123Z").unwrap();
        assert_eq!(t.as_micros(), 1_795_342_530_123_000);
        let offset = Timestamp::parse("2026-11-22T11:15:30.123+01:00").unwrap();
        assert_eq!(offset, t);
        let nanos = Timestamp::parse("2026-11-22T10:15:30.123456789Z").unwrap();
        assert_eq!(nanos.as_micros(), 1_795_342_530_123_456);
    }

    #[test]
    fn rejects_non_rfc3339() {
        for bad in ["2026-11-22", "2026-11-22 10:15:30", "yesterday", "2026-11-22T10:15:30"] {
            let err = Timestamp::parse(bad).unwrap_err();
            assert!(err.message().contains(bad), "{err}");
        }
    }

    #[test]
    fn date_is_the_utc_day() {
        let last_ms = Timestamp::parse("2026-11-20T23:59:59.999Z").unwrap();
        assert_eq!(last_ms.date().to_string(), "2026-11-20");
        let next = Timestamp::parse("2026-11-21T00:00:00Z").unwrap();
        assert_eq!(next.date().to_string(), "2026-11-21");
        // 00:30 in Berlin is still the previous day in UTC.
        let berlin = Timestamp::parse("2026-11-21T00:30:00+01:00").unwrap();
        assert_eq!(berlin.date(), Date::from_ymd(2026, 11, 20).unwrap());
        let before_epoch = Timestamp::parse("1969-12-31T23:00:00Z").unwrap();
        assert_eq!(before_epoch.date().as_days(), -1);
    }

    #[test]
    fn dates_round_trip() {
        let d = Date::parse("2026-11-20").unwrap();
        assert_eq!(d, Date::from_ymd(2026, 11, 20).unwrap());
        assert_eq!(d.as_days(), 20_777);
        assert_eq!(Date::from_days(0).to_string(), "1970-01-01");
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"2026-11-20\"");
        assert_eq!(serde_json::from_str::<Date>("\"2026-11-20\"").unwrap(), d);
        assert!(Date::parse("2026-02-30").is_err());
    }

    #[test]
    fn timestamps_serialize_as_rfc3339() {
        let t = Timestamp::parse("2026-11-20T09:00:00.000Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-20T09:00:00Z");
        let ms = Timestamp::parse("2026-11-20T23:59:59.999Z").unwrap();
        assert_eq!(serde_json::to_string(&ms).unwrap(), "\"2026-11-20T23:59:59.999Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>("\"2026-11-20T23:59:59.999Z\"").unwrap(), ms);
        assert_eq!(Timestamp::from_millis(1_000).as_micros(), 1_000_000);
    }
}
