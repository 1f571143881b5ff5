//! The checks the host makes on a projection spec when it loads a plugin.

use crate::spec::{FieldType, ProjectionSpec};

fn is_name(name: &str, separator: char) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == separator)
}

/// The checks the host makes on a spec when it loads a plugin.
pub(super) fn validate(spec: &ProjectionSpec) -> Result<(), String> {
    if !is_name(&spec.name, '-') {
        return Err(format!("projection name `{}`: use lowercase letters, digits and `-`", spec.name));
    }
    let mut collections = Vec::new();
    for c in &spec.collections {
        if !is_name(&c.name, '_') {
            return Err(format!("collection name `{}`: use lowercase letters, digits and `_`", c.name));
        }
        if collections.contains(&&c.name) {
            return Err(format!("collection `{}` declared twice", c.name));
        }
        collections.push(&c.name);
        let find = |name: &str| c.fields.iter().find(|f| f.name == name);
        for (i, f) in c.fields.iter().enumerate() {
            if !is_name(&f.name, '_') {
                return Err(format!("field name `{}`: use lowercase letters, digits and `_`", f.name));
            }
            if c.fields[..i].iter().any(|g| g.name == f.name) {
                return Err(format!("field `{}` declared twice in `{}`", f.name, c.name));
            }
            if let Some(ratio) = &f.computed {
                for operand in [&ratio.numerator, &ratio.denominator] {
                    let numeric = find(operand).is_some_and(|o| {
                        o.computed.is_none()
                            && matches!(o.field_type, FieldType::Integer | FieldType::Float | FieldType::Decimal)
                    });
                    if !numeric {
                        return Err(format!("computed field `{}`: `{operand}` is not a numeric field", f.name));
                    }
                }
            }
        }
        if c.primary_key.is_empty() {
            return Err(format!("collection `{}` has no primary key", c.name));
        }
        for name in &c.primary_key {
            let field = find(name).ok_or_else(|| format!("key field `{name}` is not a field of `{}`", c.name))?;
            if field.computed.is_some() || field.nullable == Some(true) {
                return Err(format!("key field `{name}` cannot be computed or nullable"));
            }
            if matches!(field.field_type, FieldType::Json | FieldType::List(_) | FieldType::Float) {
                return Err(format!("key field `{name}` cannot be {:?}", field.field_type));
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
        assert!(validate(&bad_ratio).unwrap_err().contains("not a numeric field"));
    }
}
