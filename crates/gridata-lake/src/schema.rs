//! Text forms of schemas and partition specs, as the CLI and pipelines write
//! them: `id long not null, name string, ts timestamptz` and `month(ts)`.

use std::sync::Arc;

use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};

use crate::{Error, Result};

fn parse_err(what: &'static str, text: &str, reason: impl Into<String>) -> Error {
    Error::Parse {
        what,
        text: text.to_string(),
        reason: reason.into(),
    }
}

/// Parse a primitive type name: boolean, int, long, float, double,
/// decimal(p,s), date, time, timestamp, timestamptz, string, uuid, binary.
pub fn parse_type(text: &str) -> Result<PrimitiveType> {
    let t = text.trim().to_ascii_lowercase();
    let p = match t.as_str() {
        "boolean" | "bool" => PrimitiveType::Boolean,
        "int" | "integer" | "int32" => PrimitiveType::Int,
        "long" | "bigint" | "int64" => PrimitiveType::Long,
        "float" | "real" | "float32" => PrimitiveType::Float,
        "double" | "float64" => PrimitiveType::Double,
        "date" => PrimitiveType::Date,
        "time" => PrimitiveType::Time,
        "timestamp" => PrimitiveType::Timestamp,
        "timestamptz" => PrimitiveType::Timestamptz,
        "string" | "varchar" | "text" => PrimitiveType::String,
        "uuid" => PrimitiveType::Uuid,
        "binary" | "bytes" => PrimitiveType::Binary,
        d if d.starts_with("decimal(") && d.ends_with(')') => {
            let inner = &d["decimal(".len()..d.len() - 1];
            let (p, s) = inner
                .split_once(',')
                .ok_or_else(|| parse_err("type", text, "decimal needs (precision, scale)"))?;
            let precision: u32 = p
                .trim()
                .parse()
                .map_err(|_| parse_err("type", text, "precision must be a number"))?;
            let scale: u32 = s
                .trim()
                .parse()
                .map_err(|_| parse_err("type", text, "scale must be a number"))?;
            if precision == 0 || precision > 38 || scale > precision {
                return Err(parse_err(
                    "type",
                    text,
                    "need 1 <= precision <= 38 and scale <= precision",
                ));
            }
            PrimitiveType::Decimal { precision, scale }
        }
        _ => {
            return Err(parse_err(
                "type",
                text,
                "expected boolean, int, long, float, double, decimal(p,s), date, time, timestamp, timestamptz, string, uuid or binary",
            ));
        }
    };
    Ok(p)
}

/// The text form of a primitive type, as [`parse_type`] reads it.
pub fn type_name(t: &Type) -> String {
    match t {
        Type::Primitive(p) => match p {
            PrimitiveType::Boolean => "boolean".into(),
            PrimitiveType::Int => "int".into(),
            PrimitiveType::Long => "long".into(),
            PrimitiveType::Float => "float".into(),
            PrimitiveType::Double => "double".into(),
            PrimitiveType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            PrimitiveType::Date => "date".into(),
            PrimitiveType::Time => "time".into(),
            PrimitiveType::Timestamp => "timestamp".into(),
            PrimitiveType::Timestamptz => "timestamptz".into(),
            PrimitiveType::String => "string".into(),
            PrimitiveType::Uuid => "uuid".into(),
            PrimitiveType::Binary => "binary".into(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// Split on commas that are not inside parentheses.
fn split_top(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parse `name type [not null] [comment '...']`, comma separated.
/// Field ids are assigned from 1 in order.
pub fn parse_schema(text: &str) -> Result<Schema> {
    let mut fields = Vec::new();
    for (i, col) in split_top(text).into_iter().enumerate() {
        let mut words = col.splitn(2, char::is_whitespace);
        let name = words.next().unwrap_or_default().trim();
        let rest = words
            .next()
            .ok_or_else(|| parse_err("schema", text, format!("column '{name}' has no type")))?
            .trim();
        let lower = rest.to_ascii_lowercase();
        let (ty, required) = match lower.strip_suffix("not null") {
            Some(t) => (&rest[..t.len()], true),
            None => (rest, false),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(parse_err(
                "schema",
                text,
                format!("bad column name '{name}'"),
            ));
        }
        let ty = parse_type(ty)
            .map_err(|e| parse_err("schema", text, format!("column '{name}': {e}")))?;
        let id = i as i32 + 1;
        fields.push(Arc::new(NestedField::new(
            id,
            name,
            Type::Primitive(ty),
            required,
        )));
    }
    if fields.is_empty() {
        return Err(parse_err("schema", text, "no columns"));
    }
    Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| parse_err("schema", text, e.to_string()))
}

/// Parse partition fields such as `month(ts)`, `bucket(16, id)`,
/// `truncate(4, name)` or a bare column (identity) against `schema`.
pub fn parse_partition_spec(fields: &[String], schema: &Schema) -> Result<UnboundPartitionSpec> {
    let mut b = UnboundPartitionSpec::builder();
    for f in fields {
        let text = f.trim();
        let (transform, column, name) = match text.split_once('(') {
            None => (Transform::Identity, text.to_string(), text.to_string()),
            Some((func, rest)) => {
                let args = rest
                    .strip_suffix(')')
                    .ok_or_else(|| parse_err("partition", text, "missing ')'"))?;
                let args: Vec<&str> = args.split(',').map(str::trim).collect();
                let func = func.trim().to_ascii_lowercase();
                match (func.as_str(), args.as_slice()) {
                    ("identity", [c]) => (Transform::Identity, c.to_string(), c.to_string()),
                    ("year" | "years", [c]) => {
                        (Transform::Year, c.to_string(), format!("{c}_year"))
                    }
                    ("month" | "months", [c]) => {
                        (Transform::Month, c.to_string(), format!("{c}_month"))
                    }
                    ("day" | "days", [c]) => (Transform::Day, c.to_string(), format!("{c}_day")),
                    ("hour" | "hours", [c]) => {
                        (Transform::Hour, c.to_string(), format!("{c}_hour"))
                    }
                    ("bucket", [n, c]) => {
                        let n: u32 = n.parse().map_err(|_| {
                            parse_err("partition", text, "bucket count must be a number")
                        })?;
                        (Transform::Bucket(n), c.to_string(), format!("{c}_bucket"))
                    }
                    ("truncate", [w, c]) => {
                        let w: u32 = w.parse().map_err(|_| {
                            parse_err("partition", text, "truncate width must be a number")
                        })?;
                        (Transform::Truncate(w), c.to_string(), format!("{c}_trunc"))
                    }
                    _ => {
                        return Err(parse_err(
                            "partition",
                            text,
                            "expected identity(c), year(c), month(c), day(c), hour(c), bucket(n, c) or truncate(w, c)",
                        ));
                    }
                }
            }
        };
        let source = schema
            .field_by_name(&column)
            .ok_or_else(|| parse_err("partition", text, format!("no column '{column}'")))?;
        let ty = source.field_type.as_ref();
        if transform.result_type(ty).is_err() {
            return Err(parse_err(
                "partition",
                text,
                format!(
                    "{transform} cannot apply to column '{column}' of type {}",
                    type_name(ty)
                ),
            ));
        }
        b = b
            .add_partition_field(source.id, name, transform)
            .map_err(|e| parse_err("partition", text, e.to_string()))?;
    }
    Ok(b.build())
}

/// The text form of a schema, as [`parse_schema`] reads it.
pub fn schema_text(schema: &Schema) -> String {
    schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{} {}{}",
                f.name,
                type_name(&f.field_type),
                if f.required { " not null" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Iceberg type of an Arrow type, for tables created from query
/// results. Nested and interval types are refused, naming the column.
pub fn primitive_from_arrow(
    column: &str,
    dt: &arrow::datatypes::DataType,
) -> Result<PrimitiveType> {
    use arrow::datatypes::{DataType as D, TimeUnit};
    Ok(match dt {
        D::Boolean => PrimitiveType::Boolean,
        D::Int8 | D::Int16 | D::Int32 | D::UInt8 | D::UInt16 => PrimitiveType::Int,
        D::Int64 | D::UInt32 => PrimitiveType::Long,
        D::Float16 | D::Float32 => PrimitiveType::Float,
        D::Float64 => PrimitiveType::Double,
        D::Utf8 | D::LargeUtf8 | D::Utf8View => PrimitiveType::String,
        D::Binary | D::LargeBinary | D::BinaryView => PrimitiveType::Binary,
        D::Date32 | D::Date64 => PrimitiveType::Date,
        D::Time64(_) | D::Time32(_) => PrimitiveType::Time,
        D::Timestamp(TimeUnit::Nanosecond, None) | D::Timestamp(_, None) => {
            PrimitiveType::Timestamp
        }
        D::Timestamp(_, Some(_)) => PrimitiveType::Timestamptz,
        D::Dictionary(_, values) => return primitive_from_arrow(column, values),
        D::Decimal128(p, s) if *s >= 0 => PrimitiveType::Decimal {
            precision: u32::from(*p).min(38),
            scale: *s as u32,
        },
        other => {
            return Err(Error::DataMismatch {
                table: String::new(),
                reason: format!("column '{column}' has type {other}, which tables cannot hold"),
            });
        }
    })
}

/// An Iceberg schema with the columns of an Arrow schema, all optional,
/// with field ids from 1.
pub fn schema_from_arrow(arrow: &arrow::datatypes::Schema) -> Result<Schema> {
    let fields = arrow
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Ok(Arc::new(NestedField::new(
                i as i32 + 1,
                f.name(),
                Type::Primitive(primitive_from_arrow(f.name(), f.data_type())?),
                false,
            )))
        })
        .collect::<Result<Vec<_>>>()?;
    Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| parse_err("schema", "query result", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_round_trips() {
        let s =
            parse_schema("id long not null, name string, amount decimal(10, 2), ts timestamptz")
                .unwrap();
        assert_eq!(
            schema_text(&s),
            "id long not null, name string, amount decimal(10,2), ts timestamptz"
        );
        assert_eq!(s.field_by_name("ts").unwrap().id, 4);
    }

    #[test]
    fn bad_schema_names_the_column() {
        let e = parse_schema("id long, qty intt").unwrap_err().to_string();
        assert!(e.contains("qty"), "{e}");
    }

    #[test]
    fn partition_transforms() {
        let s = parse_schema("id long, name string, ts timestamptz").unwrap();
        let spec = parse_partition_spec(
            &[
                "month(ts)".into(),
                "bucket(16, id)".into(),
                "truncate(2, name)".into(),
            ],
            &s,
        )
        .unwrap();
        assert_eq!(spec.fields().len(), 3);
        assert!(parse_partition_spec(&["month(name)".into()], &s).is_err());
        assert!(parse_partition_spec(&["month(nope)".into()], &s).is_err());
    }
}
