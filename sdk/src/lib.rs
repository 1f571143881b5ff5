//! Write Projector projection plugins in Rust.
//!
//! A projection is a type implementing [`Projection`]: [`Projection::describe`] declares the
//! read model, [`Projection::handle`] turns one Kafka [`Event`] into the [`Operation`]s it
//! implies. [`export_projection!`] makes it a `wasm32-wasip2` component of the WIT world
//! `projector:projection/projection`. The same code builds natively, where [`Context`] keeps
//! state in memory and [`testing::Harness`] applies operations to an in-memory read model.
//!
//! Invariants a projection must keep (the host relies on them):
//! - Deterministic: no clock, randomness or I/O. Times come from the events, so replaying the
//!   topic rebuilds the same read model.
//! - One result per event: an `Err` is pinned to its event and names the field at fault.
//! - State keys derive from the record key (the host serializes writes per partition only).
//! - Money is [`Decimal`], never `f64`; see [`money`].
//!
//! ```
//! use projector_sdk::{Collection, Context, Error, Event, Field, Operation, Projection, ProjectionSpec};
//!
//! struct Seen;
//!
//! impl Projection for Seen {
//!     fn describe() -> ProjectionSpec {
//!         ProjectionSpec::new("seen", 1, "Last event type per order.").collection(
//!             Collection::postgres("seen", "One row per order.")
//!                 .field(Field::text("order_id"))
//!                 .field(Field::text("last_type").filterable())
//!                 .primary_key(["order_id"]),
//!         )
//!     }
//!
//!     fn handle(event: &Event, _ctx: &mut Context) -> Result<Vec<Operation>, Error> {
//!         let (Some(order), Some(kind)) = (event.key_str(), event.event_type()) else {
//!             return Ok(Vec::new());
//!         };
//!         Ok(vec![Operation::upsert("seen", order).set("last_type", kind).into()])
//!     }
//! }
//!
//! projector_sdk::export_projection!(Seen);
//! ```

#![warn(missing_docs)]

// Lets the generated bindings and `export_projection!` name this crate the same way inside
// and outside it.
extern crate self as projector_sdk;

mod context;
mod error;
mod event;
mod guest;
mod money;
mod operation;
mod spec;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod time;
mod value;

pub use context::{Context, Level, MAX_STATE_BYTES};
pub use error::Error;
pub use event::{Event, Header, TYPE_ID_HEADER};
pub use money::{money, Decimal};
pub use operation::{Delete, Increment, Key, Operation, Upsert};
pub use spec::{Collection, Field, FieldType, ProjectionSpec, Ratio, ScalarType, Sink};
pub use time::{Date, Timestamp};
pub use value::{Scalar, Value};

/// A projection: declares a read model and maps each event to operations on it.
pub trait Projection {
    /// Declares the read model. Called once when the host loads the plugin; must not depend
    /// on state or on anything but the code.
    fn describe() -> ProjectionSpec;

    /// The operations `event` implies, in the order the host applies them: empty for an event
    /// the projection ignores (an unknown type), `Err` for an event it cannot handle (the
    /// message names the missing or malformed field).
    fn handle(event: &Event, ctx: &mut Context) -> Result<Vec<Operation>, Error>;
}

/// Exports a [`Projection`] as the component's `describe` and `handle`.
///
/// Use once per plugin crate, at the crate root: `projector_sdk::export_projection!(MyProjection);`.
/// Expands to nothing when not compiling for `wasm32`, so the crate also builds and tests
/// natively.
#[macro_export]
macro_rules! export_projection {
    ($projection:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __ProjectorExport;

            impl $crate::__private::bindings::Guest for __ProjectorExport {
                fn describe() -> $crate::__private::wit::ProjectionSpec {
                    $crate::__private::describe::<$projection>()
                }

                fn handle(
                    events: ::std::vec::Vec<$crate::__private::wit::Event>,
                ) -> ::std::vec::Vec<
                    ::std::result::Result<::std::vec::Vec<$crate::__private::wit::Operation>, ::std::string::String>,
                > {
                    $crate::__private::handle::<$projection>(events)
                }
            }

            $crate::__private::bindings::export!(
                __ProjectorExport with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Bindings and glue for [`export_projection!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::guest::{describe, handle};
    pub use bindings::projector::projection::types as wit;
    pub use wit_bindgen;

    /// The generated WIT bindings; only `guest` and `export_projection!` use them.
    #[allow(unsafe_code, missing_docs, clippy::all)]
    pub mod bindings {
        wit_bindgen::generate!({
            world: "projection",
            path: "../wit",
            pub_export_macro: true,
            default_bindings_module: "projector_sdk::__private::bindings",
            runtime_path: "projector_sdk::__private::wit_bindgen::rt",
        });
    }
}
