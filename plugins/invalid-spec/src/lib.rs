//! A test fixture: `describe` declares a primary key on a JSON field, which the host refuses
//! (a JSON value has no single canonical form, so it cannot identify a row). Uploads of it
//! must be refused with `invalid_spec`.

use projector_sdk::{Collection, Context, Error, Event, Field, Operation, Projection, ProjectionSpec};

/// The fixture projection.
pub struct InvalidSpec;

impl Projection for InvalidSpec {
    fn describe() -> ProjectionSpec {
        ProjectionSpec::new("invalid-spec", 1, "Declares a JSON primary key.").collection(
            Collection::postgres("invalid_rows", "Rows keyed by a JSON document.")
                .field(Field::json("document").description("Not a valid key type."))
                .primary_key(["document"]),
        )
    }

    fn handle(_event: &Event, _ctx: &mut Context) -> Result<Vec<Operation>, Error> {
        Ok(Vec::new())
    }
}

projector_sdk::export_projection!(InvalidSpec);
