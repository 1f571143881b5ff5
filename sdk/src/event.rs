//! One Kafka record as a projection sees it, with helpers to read the order-event envelope.
//!
//! Invariants: the event is the record exactly as consumed (bytes untouched); the helpers only
//! read it. JSON decoding keeps every number's exact digits (serde_json `arbitrary_precision`),
//! so decimals decode without passing through `f64`, and decoding errors name the JSON field.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::{Error, Timestamp};

/// The header that Spring Kafka's `JsonSerializer` fills with the event's Java class name.
pub const TYPE_ID_HEADER: &str = "__TypeId__";

/// One Kafka record, as consumed from the topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// Topic the record was read from.
    pub topic: String,
    /// Partition of the record.
    pub partition: i32,
    /// Offset of the record within its partition.
    pub offset: i64,
    /// Record key, `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Record value, `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Record headers, in the order the producer wrote them.
    pub headers: Vec<Header>,
    /// Broker timestamp in milliseconds since the epoch, when the broker has one.
    pub timestamp_ms: Option<i64>,
}

/// One Kafka record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name, e.g. `__TypeId__`.
    pub key: String,
    /// Raw header value, `None` for a null header.
    pub value: Option<Vec<u8>>,
}

impl Event {
    /// The record key as UTF-8, or `None` when the key is null or not UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(self.key.as_deref()?).ok()
    }

    /// The value of the last header named `name` (Kafka's `lastHeader`), `None` when there is
    /// no such header or its value is null.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().rev().find(|h| h.key == name)?.value.as_deref()
    }

    /// The broker timestamp, when the broker has one. Projections should prefer the instants
    /// inside the event: they survive a re-publication.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp_ms.map(Timestamp::from_millis)
    }

    /// The event's simple type name, e.g. `OrderCreated`: the part after the last `.` of the
    /// `__TypeId__` header when present, otherwise the string in the JSON value's `"type"`
    /// field. `None` when neither is there (a projection then skips the event).
    pub fn event_type(&self) -> Option<&str> {
        if let Some(type_id) = self.header(TYPE_ID_HEADER) {
            if let Ok(class) = std::str::from_utf8(type_id) {
                let simple = class.rsplit('.').next().unwrap_or(class).trim();
                if !simple.is_empty() {
                    return Some(simple);
                }
            }
        }
        #[derive(Deserialize)]
        struct Envelope<'a> {
            // Borrowed from the value's bytes: a type name never needs JSON escapes.
            #[serde(rename = "type", borrow, default)]
            type_name: Option<&'a str>,
        }
        let envelope: Envelope<'_> = serde_json::from_slice(self.value.as_deref()?).ok()?;
        envelope.type_name.filter(|name| !name.is_empty())
    }

    /// Decodes the JSON value into `T`. Numbers keep their exact digits, so
    /// [`Decimal`](crate::Decimal) fields are exact. The error names the offending field, e.g.
    /// "field `items[0].unitPrice`: invalid type: string \"x\", expected a Decimal".
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let bytes = self.value.as_deref().ok_or_else(|| Error::new("the record has no value (tombstone)"))?;
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::{money, Decimal};

    fn event(headers: &[(&str, Option<&str>)], value: &str) -> Event {
        Event {
            topic: "order-events".into(),
            key: Some(b"ord-1".to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: headers
                .iter()
                .map(|(k, v)| Header { key: (*k).into(), value: v.map(|v| v.as_bytes().to_vec()) })
                .collect(),
            ..Event::default()
        }
    }

    #[test]
    fn type_from_header_simple_name() {
        let e = event(&[("__TypeId__", Some("com.example.orders.events.OrderCreated"))], "{}");
        assert_eq!(e.event_type(), Some("OrderCreated"));
        let bare = event(&[("__TypeId__", Some("OrderShipped"))], r#"{"type":"Other"}"#);
        assert_eq!(bare.event_type(), Some("OrderShipped"));
    }

    #[test]
    fn type_from_value_when_no_header() {
        let e = event(&[], r#"{"eventId":"e-6","type":"OrderCreated","total":1.5}"#);
        assert_eq!(e.event_type(), Some("OrderCreated"));
        let null_header = event(&[("__TypeId__", None)], r#"{"type":"OrderSubmitted"}"#);
        assert_eq!(null_header.event_type(), Some("OrderSubmitted"));
    }

    #[test]
    fn no_type_is_none() {
        assert_eq!(event(&[], r#"{"eventId":"e"}"#).event_type(), None);
        assert_eq!(event(&[], r#"{"type":42}"#).event_type(), None);
        assert_eq!(event(&[], "not json").event_type(), None);
        let tombstone = Event { value: None, ..event(&[], "") };
        assert_eq!(tombstone.event_type(), None);
    }

    #[test]
    fn header_is_last_one() {
        let e = event(&[("a", Some("1")), ("a", Some("2"))], "{}");
        assert_eq!(e.header("a"), Some(&b"2"[..]));
        assert_eq!(e.header("b"), None);
        assert_eq!(e.key_str(), Some("ord-1"));
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Submitted {
        total: Decimal,
        submitted_at: Timestamp,
        #[serde(default)]
        #[allow(dead_code)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Item {
        unit_price: Decimal,
    }

    #[test]
    fn json_decimals_are_exact() {
        let e = event(&[], r#"{"total":116.8,"submittedAt":"2026-11-20T09:02:00.000Z"}"#);
        let s: Submitted = e.json().unwrap();
        assert_eq!(s.total.to_string(), "116.8");
        assert_eq!(money(s.total).to_string(), "116.80");
        assert_eq!(s.submitted_at, Timestamp::parse("2026-11-20T09:02:00Z").unwrap());
        // A float would turn 0.1 + 0.2 into 0.30000000000000004.
        let sum: Submitted =
            event(&[], r#"{"total":0.30000000000000000001,"submittedAt":"2026-11-20T09:02:00Z"}"#).json().unwrap();
        assert_eq!(sum.total.to_string(), "0.30000000000000000001");
    }

    #[test]
    fn json_errors_name_the_field() {
        let missing = event(&[], r#"{"submittedAt":"2026-11-20T09:02:00Z"}"#).json::<Submitted>();
        assert!(missing.unwrap_err().message().contains("missing field `total`"));
        let bad_time = event(&[], r#"{"total":1,"submittedAt":"soon"}"#).json::<Submitted>();
        let msg = bad_time.unwrap_err().to_string();
        assert!(msg.starts_with("field `submittedAt`: invalid timestamp `soon`"), "{msg}");
        let bad_price = event(&[], r#"{"total":1,"submittedAt":"2026-11-20T09:02:00Z","items":[{"unitPrice":true}]}"#)
            .json::<Submitted>();
        let msg = bad_price.unwrap_err().to_string();
        assert!(msg.starts_with("field `items[0].unitPrice`:"), "{msg}");
        let tombstone = Event { value: None, ..Event::default() }.json::<Submitted>();
        assert!(tombstone.unwrap_err().message().contains("tombstone"));
    }
}
