//! The declaration of a read model: what `describe` returns.
//!
//! Invariants: fields keep their declared (column) order; a field is nullable unless it is part
//! of the primary key or marked [`Field::required`]; filterable, sortable and searchable are off
//! unless asked for. The host validates names and types when it loads the plugin; the
//! [`testing`](crate::testing) harness applies the same checks natively.

/// A projection's read model: name, version and collections.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionSpec {
    pub(crate) name: String,
    pub(crate) version: u32,
    pub(crate) description: String,
    pub(crate) collections: Vec<Collection>,
}

/// One collection (table or index) of a read model.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) sink: Sink,
    pub(crate) fields: Vec<Field>,
    pub(crate) primary_key: Vec<String>,
}

/// Where a collection is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// A PostgreSQL table, exposed as a view in schema `read_models`.
    Postgres,
    /// An Elasticsearch index.
    Elasticsearch,
}

/// One field (column) of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub(crate) name: String,
    pub(crate) field_type: FieldType,
    pub(crate) nullable: Option<bool>,
    pub(crate) searchable: bool,
    pub(crate) filterable: bool,
    pub(crate) sortable: bool,
    pub(crate) computed: Option<Ratio>,
    pub(crate) description: String,
}

/// The declared type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// boolean (PostgreSQL `boolean`).
    Boolean,
    /// 64-bit integer (PostgreSQL `bigint`).
    Integer,
    /// 64-bit float (PostgreSQL `double precision`).
    Float,
    /// Exact decimal (PostgreSQL `numeric`).
    Decimal,
    /// Text (PostgreSQL `text`).
    Text,
    /// Instant (PostgreSQL `timestamptz`).
    Timestamp,
    /// Calendar date (PostgreSQL `date`).
    Date,
    /// JSON document (PostgreSQL `jsonb`).
    Json,
    /// List of scalars (PostgreSQL array of the element type).
    List(ScalarType),
}

/// The element type of a list field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    /// `boolean` values.
    Boolean,
    /// `integer` values.
    Integer,
    /// `float` values.
    Float,
    /// `decimal` values.
    Decimal,
    /// `text` values.
    Text,
    /// `timestamp` values.
    Timestamp,
    /// `date` values.
    Date,
}

/// A field the host computes as `round(numerator / denominator, scale)`, null when the
/// denominator is zero or null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ratio {
    /// Field divided.
    pub numerator: String,
    /// Field divided by.
    pub denominator: String,
    /// Decimal places of the result, rounded half away from zero.
    pub scale: u8,
}

impl ProjectionSpec {
    /// A projection named `name` (lowercase letters, digits, `-`), at `version` (a new version
    /// is rebuilt from the start of the topic), with a one-sentence `description`.
    pub fn new(name: impl Into<String>, version: u32, description: impl Into<String>) -> Self {
        Self { name: name.into(), version, description: description.into(), collections: Vec::new() }
    }

    /// Adds a collection.
    #[must_use]
    pub fn collection(mut self, collection: Collection) -> Self {
        self.collections.push(collection);
        self
    }

    /// The projection name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The read model's version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The collections, in declared order.
    pub fn collections(&self) -> &[Collection] {
        &self.collections
    }
}

impl Collection {
    /// A PostgreSQL table named `name` (lowercase letters, digits, `_`), where one row is
    /// `description`.
    pub fn postgres(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self::new(name, description, Sink::Postgres)
    }

    /// An Elasticsearch index named `name`, where one document is `description`.
    pub fn elasticsearch(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self::new(name, description, Sink::Elasticsearch)
    }

    fn new(name: impl Into<String>, description: impl Into<String>, sink: Sink) -> Self {
        Self { name: name.into(), description: description.into(), sink, fields: Vec::new(), primary_key: Vec::new() }
    }

    /// Adds a field after the ones already declared.
    #[must_use]
    pub fn field(mut self, field: Field) -> Self {
        self.fields.push(field);
        self
    }

    /// Names the primary-key fields, in key order. They are never nullable.
    #[must_use]
    pub fn primary_key<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.primary_key = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Rewrites every field declared so far with `f`, e.g. to mark fields that a shared
    /// helper declared as searchable.
    pub fn map_fields(mut self, f: impl FnMut(Field) -> Field) -> Self {
        self.fields = self.fields.into_iter().map(f).collect();
        self
    }

    /// The collection name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fields, in column order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The primary-key field names, in key order.
    pub fn key_fields(&self) -> &[String] {
        &self.primary_key
    }

    /// Whether `field` may hold null: false for primary-key and required fields.
    pub fn is_nullable(&self, field: &Field) -> bool {
        !self.primary_key.contains(&field.name) && field.nullable.unwrap_or(true)
    }
}

macro_rules! typed_constructors {
    ($($(#[$doc:meta])* $fn:ident => $variant:ident;)*) => {$(
        $(#[$doc])*
        pub fn $fn(name: impl Into<String>) -> Self {
            Self::new(name, FieldType::$variant)
        }
    )*};
}

impl Field {
    /// A field named `name` (lowercase letters, digits, `_`) of type `field_type`.
    pub fn new(name: impl Into<String>, field_type: FieldType) -> Self {
        Self {
            name: name.into(),
            field_type,
            nullable: None,
            searchable: false,
            filterable: false,
            sortable: false,
            computed: None,
            description: String::new(),
        }
    }

    typed_constructors! {
        /// A `boolean` field.
        boolean => Boolean;
        /// An `integer` (64-bit) field.
        integer => Integer;
        /// A `float` (64-bit) field; not for money.
        float => Float;
        /// An exact `decimal` field, for money.
        decimal => Decimal;
        /// A `text` field.
        text => Text;
        /// A `timestamp` (instant) field.
        timestamp => Timestamp;
        /// A `date` (calendar day) field.
        date => Date;
        /// A `json` document field.
        json => Json;
    }

    /// A list field whose elements are `element` values.
    pub fn list(name: impl Into<String>, element: ScalarType) -> Self {
        Self::new(name, FieldType::List(element))
    }

    /// Says what the field means, for people reading the read model.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Allows null (the default, except for primary-key fields).
    #[must_use]
    pub fn nullable(mut self) -> Self {
        self.nullable = Some(true);
        self
    }

    /// Forbids null: the host declares the column NOT NULL.
    #[must_use]
    pub fn required(mut self) -> Self {
        self.nullable = Some(false);
        self
    }

    /// Puts the field into the collection's full-text search document.
    #[must_use]
    pub fn searchable(mut self) -> Self {
        self.searchable = true;
        self
    }

    /// Lets queries filter on the field (the host indexes it).
    #[must_use]
    pub fn filterable(mut self) -> Self {
        self.filterable = true;
        self
    }

    /// Lets queries sort on the field (the host indexes it).
    #[must_use]
    pub fn sortable(mut self) -> Self {
        self.sortable = true;
        self
    }

    /// Makes the host compute the field as `round(numerator / denominator, scale)` (null when
    /// the denominator is zero or null). Operations must not write a computed field.
    #[must_use]
    pub fn computed_ratio(mut self, numerator: impl Into<String>, denominator: impl Into<String>, scale: u8) -> Self {
        self.computed = Some(Ratio { numerator: numerator.into(), denominator: denominator.into(), scale });
        self
    }

    /// The field name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the field is part of the collection's full-text search document.
    pub fn is_searchable(&self) -> bool {
        self.searchable
    }

    /// The declared type.
    pub fn field_type(&self) -> FieldType {
        self.field_type
    }

    /// The ratio the host computes the field from, if it is computed.
    pub fn computed(&self) -> Option<&Ratio> {
        self.computed.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_primary_key_nullability() {
        let c = Collection::postgres("t", "one row")
            .field(Field::text("id").description("the id"))
            .field(Field::decimal("total").sortable())
            .field(Field::integer("n").required())
            .field(Field::decimal("avg").computed_ratio("total", "n", 2))
            .primary_key(["id"]);
        let [id, total, n, avg] = c.fields() else { panic!("four fields") };
        assert!(!c.is_nullable(id));
        assert!(c.is_nullable(total));
        assert!(!c.is_nullable(n));
        assert!(total.sortable && !total.filterable && !total.searchable);
        assert_eq!(id.description, "the id");
        assert_eq!(avg.computed().unwrap().scale, 2);
        assert_eq!(c.key_fields(), ["id".to_string()]);
        let spec = ProjectionSpec::new("p", 3, "d").collection(c);
        assert_eq!((spec.name(), spec.version(), spec.collections().len()), ("p", 3, 1));
    }
}
