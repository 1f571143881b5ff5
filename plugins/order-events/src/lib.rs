//! The `order-events` topic as the example projections read it (see `ORDER-EVENTS.md`).
//!
//! Invariants:
//! - An event's type is the simple name from `__TypeId__` or the value's `type` field; unknown
//!   or absent types decode to `None` and are skipped, never an error.
//! - A known type with a missing or malformed field is an error naming that field. Money
//!   decodes exactly (never through `f64`); instants keep the text the producer wrote.
//! - The record key, when present, must equal the value's `orderId`: projections key their
//!   state by order id, and the host serializes state writes per partition, i.e. per key.
//! - Redeliveries are detected by `eventId`, per order, through [`AppliedEvents`]; [`handle_once`]
//!   applies each event once and saves the order's state only when the event succeeds.

pub mod summary;

use std::fmt;
use std::str::FromStr;

use projector_sdk::{Context, Decimal, Error, Event, Level, Operation, Timestamp};
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

/// One event of an order, of a type the example projections know.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderEvent {
    /// Legacy producer: an order placed in one go, already submitted.
    Placed(OrderPlaced),
    /// Current producer: an order opened with its first items.
    Created(OrderCreated),
    /// Current producer: one more item on an open order.
    ItemAdded(ItemAdded),
    /// Current producer: the order was submitted with its final total.
    Submitted(OrderSubmitted),
    /// The order left the warehouse.
    Shipped(OrderShipped),
    /// The order was cancelled.
    Cancelled(OrderCancelled),
}

/// Legacy `OrderPlaced`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    /// Unique id of the event; the same on a redelivery.
    pub event_id: String,
    /// The order.
    pub order_id: String,
    /// The customer.
    pub customer_id: String,
    /// The customer's display name.
    pub customer_name: String,
    /// The ordered lines.
    pub lines: Vec<Line>,
    /// The order total.
    pub total: Decimal,
    /// When the order was placed.
    pub occurred_at: Instant,
}

/// `OrderCreated`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    /// Unique id of the event; the same on a redelivery.
    pub event_id: String,
    /// The order.
    pub order_id: String,
    /// The customer.
    pub customer_id: String,
    /// The customer's display name.
    pub customer_name: String,
    /// The first items.
    pub items: Vec<Item>,
    /// When the order was created.
    pub created_at: Instant,
}

/// `ItemAdded`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemAdded {
    /// Unique id of the event; the same on a redelivery.
    pub event_id: String,
    /// The order.
    pub order_id: String,
    /// The product's id (its SKU).
    pub product_id: String,
    /// The product's display name.
    pub product_name: String,
    /// How many.
    pub quantity: i64,
    /// Price of one.
    pub unit_price: Price,
    /// When the item was added.
    pub occurred_at: Instant,
}

/// `OrderSubmitted`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSubmitted {
    /// Unique id of the event; the same on a redelivery.
    pub event_id: String,
    /// The order.
    pub order_id: String,
    /// The order's final total.
    pub total: Decimal,
    /// When the order was submitted.
    pub submitted_at: Instant,
}

/// `OrderShipped`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderShipped {
    /// Unique id of the event; the same on a redelivery.
    pub event_id: String,
    /// The order.
    pub order_id: String,
    /// The carrier, e.g. `DHL`.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking_number: String,
    /// When the order was shipped.
    pub shipped_at: Instant,
}

/// `OrderCancelled`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    /// Unique id of the event; the same on a redelivery.
    pub event_id: String,
    /// The order.
    pub order_id: String,
    /// Why, when the producer says (null or absent otherwise).
    #[serde(default)]
    pub reason: Option<String>,
    /// When the order was cancelled.
    pub cancelled_at: Instant,
}

/// A line of a legacy `OrderPlaced`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    /// The product's SKU.
    pub sku: String,
    /// The product's display name.
    pub product_name: String,
    /// How many.
    pub quantity: i64,
    /// Price of one.
    pub unit_price: Price,
}

/// An item of an `OrderCreated`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// The product's id (its SKU).
    pub product_id: String,
    /// The product's display name.
    pub product_name: String,
    /// How many.
    pub quantity: i64,
    /// Price of one.
    pub unit_price: Price,
}

/// A unit price: the exact JSON number the producer wrote, and its decimal value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Price {
    number: serde_json::Number,
    #[serde(skip)]
    amount: Decimal,
}

impl Price {
    /// The price as an exact decimal.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// `quantity` × this price, exact (not yet rounded).
    pub fn times(&self, quantity: i64) -> Decimal {
        self.amount * Decimal::from(quantity)
    }

    /// The JSON number as written in the event (`8.9`, `99.0`).
    pub fn number(&self) -> &serde_json::Number {
        &self.number
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        // `arbitrary_precision` keeps the digits, so this never goes through f64.
        let digits = number.to_string();
        let amount = Decimal::from_str(&digits)
            .or_else(|_| Decimal::from_scientific(&digits))
            .map_err(|_| de::Error::custom(format!("{digits} does not fit a decimal")))?;
        Ok(Self { number, amount })
    }
}

/// An instant as the producer wrote it, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instant {
    /// The instant.
    pub at: Timestamp,
    /// The exact text from the event, e.g. `2026-11-20T09:00:00.000Z`.
    pub text: String,
}

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let at = Timestamp::parse(&text).map_err(de::Error::custom)?;
        Ok(Self { at, text })
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl OrderEvent {
    /// The order event in `event`; `Ok(None)` for a type the projections do not know (or an
    /// event without a type), an error naming the field when a known type is malformed.
    pub fn decode(event: &Event) -> Result<Option<Self>, Error> {
        let decoded = match event.event_type() {
            Some("OrderPlaced") => Self::Placed(event.json()?),
            Some("OrderCreated") => Self::Created(event.json()?),
            Some("ItemAdded") => Self::ItemAdded(event.json()?),
            Some("OrderSubmitted") => Self::Submitted(event.json()?),
            Some("OrderShipped") => Self::Shipped(event.json()?),
            Some("OrderCancelled") => Self::Cancelled(event.json()?),
            _ => return Ok(None),
        };
        if let Some(key) = &event.key {
            if key.as_slice() != decoded.order_id().as_bytes() {
                return Err(Error::invalid_field(
                    "orderId",
                    format!("`{}` differs from the record key `{}`", decoded.order_id(), String::from_utf8_lossy(key)),
                ));
            }
        }
        Ok(Some(decoded))
    }

    /// The event's `eventId`.
    pub fn event_id(&self) -> &str {
        match self {
            Self::Placed(e) => &e.event_id,
            Self::Created(e) => &e.event_id,
            Self::ItemAdded(e) => &e.event_id,
            Self::Submitted(e) => &e.event_id,
            Self::Shipped(e) => &e.event_id,
            Self::Cancelled(e) => &e.event_id,
        }
    }

    /// The event's `orderId`.
    pub fn order_id(&self) -> &str {
        match self {
            Self::Placed(e) => &e.order_id,
            Self::Created(e) => &e.order_id,
            Self::ItemAdded(e) => &e.order_id,
            Self::Submitted(e) => &e.order_id,
            Self::Shipped(e) => &e.order_id,
            Self::Cancelled(e) => &e.order_id,
        }
    }
}

/// The ids of the events already applied to one order, kept in the order's state so that a
/// redelivered event (same `eventId`) is applied once. Grows by one short id per event of the
/// order, far below the host's 64 KiB state limit for any realistic order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AppliedEvents(Vec<String>);

impl AppliedEvents {
    /// Records `event_id`; false when it was already recorded (a redelivery to skip).
    pub fn first_time(&mut self, event_id: &str) -> bool {
        if self.0.iter().any(|id| id == event_id) {
            return false;
        }
        self.0.push(event_id.to_owned());
        true
    }
}

/// A projection's per-order state: what it keeps about one order, including the ids of the
/// events already applied to it.
pub trait OrderState: Default + Serialize + DeserializeOwned {
    /// The applied event ids.
    fn applied(&mut self) -> &mut AppliedEvents;
}

/// Per-order state holding only the applied event ids: for projections whose operations need
/// nothing else from an order's earlier events.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AppliedOnly {
    applied: AppliedEvents,
}

impl OrderState for AppliedOnly {
    fn applied(&mut self) -> &mut AppliedEvents {
        &mut self.applied
    }
}

/// Handles `event` for a projection keeping per-order state `S` under the order id: skips
/// unknown types and redeliveries, otherwise passes the decoded event and the order's state to
/// `apply`, and saves the state when `apply` succeeds.
pub fn handle_once<S: OrderState>(
    event: &Event,
    ctx: &mut Context,
    apply: impl FnOnce(&mut S, &OrderEvent) -> Result<Vec<Operation>, Error>,
) -> Result<Vec<Operation>, Error> {
    let Some(order_event) = OrderEvent::decode(event)? else {
        return Ok(Vec::new());
    };
    let order_id = order_event.order_id();
    let mut state: S = ctx.state(order_id)?.unwrap_or_default();
    if !state.applied().first_time(order_event.event_id()) {
        let message = format!("Skipped redelivered event {} of order {order_id}.", order_event.event_id());
        ctx.log(Level::Debug, message);
        return Ok(Vec::new());
    }
    let ops = apply(&mut state, &order_event)?;
    ctx.set_state(order_id, &state)?;
    Ok(ops)
}

/// Order statuses, as the read models spell them.
pub mod status {
    /// Opened by `OrderCreated`, items may still be added.
    pub const CREATED: &str = "CREATED";
    /// Placed by the legacy producer (`OrderPlaced`), already submitted.
    pub const PLACED: &str = "PLACED";
    /// Submitted (`OrderSubmitted`).
    pub const SUBMITTED: &str = "SUBMITTED";
    /// Shipped (`OrderShipped`).
    pub const SHIPPED: &str = "SHIPPED";
    /// Cancelled (`OrderCancelled`).
    pub const CANCELLED: &str = "CANCELLED";
}

/// The hand-written `samples.jsonl` records shared by the plugins' tests.
pub const SAMPLES: &str = include_str!("../../testdata/samples.jsonl");

#[cfg(test)]
mod tests {
    use projector_sdk::testing::{event_from_sample, events_from_samples};

    use super::*;

    #[test]
    fn decodes_every_sample() {
        let events = events_from_samples(SAMPLES);
        assert_eq!(events.len(), 11);
        let decoded: Vec<_> = events.iter().map(|e| OrderEvent::decode(e).unwrap()).collect();
        assert!(
            matches!(&decoded[0], Some(OrderEvent::Created(c)) if c.items[0].unit_price.number().to_string() == "8.9")
        );
        assert!(matches!(&decoded[1], Some(OrderEvent::ItemAdded(i)) if i.unit_price.number().to_string() == "99.0"));
        assert!(matches!(&decoded[4], Some(OrderEvent::Placed(p)) if p.total.to_string() == "79.47"
            && p.occurred_at.text == "2026-11-20T23:59:59.999Z"));
        assert!(matches!(&decoded[5], Some(OrderEvent::Created(c)) if c.order_id == "ord-1003"));
        assert_eq!(decoded[9], None, "LoyaltyPointsGranted is not an order event we know");
        assert_eq!(decoded[7].as_ref().unwrap().event_id(), "e-7");
    }

    fn decode(line: &str) -> Result<Option<OrderEvent>, Error> {
        OrderEvent::decode(&event_from_sample(line))
    }

    #[test]
    fn malformed_known_events_name_the_field() {
        let cases = [
            (
                r#"{"type":"OrderSubmitted","eventId":"e","orderId":"o","submittedAt":"2026-11-20T09:02:00Z"}"#,
                "missing field `total`",
            ),
            (
                r#"{"type":"OrderSubmitted","eventId":"e","orderId":"o","total":"lots","submittedAt":"2026-11-20T09:02:00Z"}"#,
                "field `total`",
            ),
            (
                r#"{"type":"OrderShipped","eventId":"e","orderId":"o","carrier":"DHL","trackingNumber":"1","shippedAt":"tomorrow"}"#,
                "field `shippedAt`: invalid timestamp",
            ),
            (
                r#"{"type":"ItemAdded","eventId":"e","orderId":"o","productId":"p","productName":"n","quantity":1.5,"unitPrice":1,"occurredAt":"2026-11-20T09:02:00Z"}"#,
                "field `quantity`",
            ),
            (
                r#"{"type":"OrderCreated","eventId":"e","orderId":"o","customerId":"c","customerName":"n","items":[{"productId":"p","productName":"n","quantity":1,"unitPrice":"1"}],"createdAt":"2026-11-20T09:02:00Z"}"#,
                "field `items[0].unitPrice`",
            ),
        ];
        for (value, expected) in cases {
            let line = format!(r#"{{"key":"o","headers":{{}},"value":{value}}}"#);
            let err = decode(&line).unwrap_err();
            assert!(err.message().contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn order_id_must_match_the_key() {
        let line = r#"{"key":"ord-1","headers":{},"value":{"type":"OrderCancelled","eventId":"e","orderId":"ord-2","cancelledAt":"2026-11-20T09:02:00Z"}}"#;
        assert!(decode(line).unwrap_err().message().starts_with("field `orderId`"));
    }

    #[test]
    fn unknown_and_untyped_events_are_skipped() {
        assert_eq!(decode(r#"{"key":"o","headers":{},"value":{"eventId":"e"}}"#).unwrap(), None);
        assert_eq!(decode(r#"{"key":"o","headers":{"__TypeId__":"x.Refunded"},"value":{}}"#).unwrap(), None);
        assert_eq!(decode(r#"{"key":"o","headers":{}}"#).unwrap(), None);
    }

    #[test]
    fn applied_events_detect_redeliveries() {
        let mut applied = AppliedEvents::default();
        assert!(applied.first_time("e-7"));
        assert!(!applied.first_time("e-7"));
        assert!(applied.first_time("e-8"));
        assert_eq!(serde_json::to_string(&applied).unwrap(), r#"["e-7","e-8"]"#);
    }
}
