//! The checks the host makes on a projection spec when it loads a plugin, in the order of the
//! host's `spec.rs`; the shared conformance corpus (`tests/conformance/declarations.json`)
//! holds both to the same answers.

use crate::spec::{Collection, FieldType, ProjectionSpec, ScalarType};

/// Longest projection name; collection and field identifiers may have 8 more characters.
const MAX_NAME: usize = 40;
const MAX_COLLECTIONS: usize = 32;
const MAX_FIELDS: usize = 256;
const MAX_DESCRIPTION: usize = 4_096;

/// Whether `name` is a valid projection name: lowercase ASCII letters, digits and `-`,
/// starting with a letter, not ending with `-`, at most 40 characters.
pub(crate) fn is_projection_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Whether `name` is a valid collection or field name: lowercase ASCII letters, digits and
/// `_`, starting with a letter, at most 48 characters.
pub(crate) fn is_identifier(name: &str) -> bool {
    name.len() <= MAX_NAME + 8
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The checks the host makes on a spec when it loads a plugin.
pub(super) fn validate(spec: &ProjectionSpec) -> Result<(), String> {
    if !is_projection_name(&spec.name) {
        return Err(format!(
            "projection name `{}` must be 1-{MAX_NAME} lowercase ASCII letters, digits and `-`, starting with a letter",
            spec.name
        ));
    }
    if spec.version == 0 {
        return Err("version must be at least 1".into());
    }
    if spec.collections.is_empty() {
        return Err("a projection declares at least one collection".into());
    }
    if spec.collections.len() > MAX_COLLECTIONS {
        return Err(format!("{} collections declared; at most {MAX_COLLECTIONS}", spec.collections.len()));
    }
    let descriptions = std::iter::once(&spec.description).chain(
        spec.collections
            .iter()
            .flat_map(|c| std::iter::once(&c.description).chain(c.fields.iter().map(|f| &f.description))),
    );
    if descriptions.into_iter().any(|d| d.len() > MAX_DESCRIPTION) {
        return Err(format!("a description is over {MAX_DESCRIPTION} bytes"));
    }
    let mut collections = Vec::new();
    for c in &spec.collections {
        check_collection(c).map_err(|e| format!("collection `{}`: {e}", c.name))?;
        if collections.contains(&&c.name) {
            return Err(format!("collection `{}` is declared twice", c.name));
        }
        collections.push(&c.name);
    }
    Ok(())
}

fn check_collection(c: &Collection) -> Result<(), String> {
    if !is_identifier(&c.name) {
        return Err("the name must be lowercase ASCII letters, digits and `_`, starting with a letter".into());
    }
    if c.fields.is_empty() {
        return Err("declares no fields".into());
    }
    if c.fields.len() > MAX_FIELDS {
        return Err(format!("{} fields declared; at most {MAX_FIELDS}", c.fields.len()));
    }
    for (i, f) in c.fields.iter().enumerate() {
        if !is_identifier(&f.name) {
            return Err(format!(
                "field `{}`: the name must be lowercase ASCII letters, digits and `_`, starting with a letter",
                f.name
            ));
        }
        if c.fields[..i].iter().any(|g| g.name == f.name) {
            return Err(format!("field `{}` is declared twice", f.name));
        }
    }
    if c.primary_key.is_empty() {
        return Err("declares no primary key".into());
    }
    let find = |name: &str| c.fields.iter().find(|f| f.name == name);
    for (i, name) in c.primary_key.iter().enumerate() {
        let field = find(name).ok_or_else(|| format!("primary key names unknown field `{name}`"))?;
        if c.primary_key[..i].contains(name) {
            return Err(format!("primary key names `{name}` twice"));
        }
        let key_type = matches!(
            field.field_type,
            FieldType::Text | FieldType::Integer | FieldType::Boolean | FieldType::Date | FieldType::Timestamp
        );
        if !key_type {
            return Err(format!("primary key field `{name}` must be text, integer, boolean, date or timestamp"));
        }
        if field.computed.is_some() {
            return Err(format!("primary key field `{name}` cannot be computed"));
        }
    }
    for f in &c.fields {
        let name = &f.name;
        if f.sortable && matches!(f.field_type, FieldType::Json | FieldType::List(_)) {
            return Err(format!("field `{name}`: json and list fields cannot be sortable"));
        }
        if f.searchable && !matches!(f.field_type, FieldType::Text | FieldType::List(ScalarType::Text)) {
            return Err(format!("field `{name}`: only text and list<text> fields can be searchable"));
        }
        let Some(ratio) = &f.computed else { continue };
        if !matches!(f.field_type, FieldType::Decimal | FieldType::Float) {
            return Err(format!("field `{name}`: a computed ratio must be decimal or float"));
        }
        if ratio.scale > 30 {
            return Err(format!("field `{name}`: ratio scale must be at most 30"));
        }
        for operand in [&ratio.numerator, &ratio.denominator] {
            let numeric = find(operand).is_some_and(|o| {
                o.computed.is_none()
                    && matches!(o.field_type, FieldType::Integer | FieldType::Float | FieldType::Decimal)
            });
            if !numeric {
                return Err(format!(
                    "field `{name}`: ratio operand `{operand}` must be a stored integer, float or decimal field"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Collection, Field};

    #[test]
    fn invalid_specs_are_refused() {
        let bad = ProjectionSpec::new("Bad Name", 1, "");
        assert!(validate(&bad).unwrap_err().contains("projection name"));
        let no_key = ProjectionSpec::new("p", 1, "").collection(Collection::postgres("c", "").field(Field::text("a")));
        assert!(validate(&no_key).unwrap_err().contains("no primary key"));
        let bad_ratio = ProjectionSpec::new("p", 1, "").collection(
            Collection::postgres("c", "")
                .field(Field::text("a"))
                .field(Field::decimal("r").computed_ratio("a", "a", 2))
                .primary_key(["a"]),
        );
        assert!(validate(&bad_ratio).unwrap_err().contains("must be a stored integer"));
    }
}
