//! Sizes in bytes as people write them in configuration.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// A size in bytes: `512`, `10KB`, `5MB`, `10GB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u64")]
pub struct ByteSize(pub u64);

impl From<ByteSize> for u64 {
    fn from(b: ByteSize) -> u64 {
        b.0
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_uppercase();
        let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        let n: u64 = num
            .parse()
            .map_err(|_| format!("'{s}' is not a size such as 10MB"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "KIB" => 1 << 10,
            "MB" | "MIB" => 1 << 20,
            "GB" | "GIB" => 1 << 30,
            "TB" | "TIB" => 1 << 40,
            other => return Err(format!("unknown size unit '{other}' in '{s}'")),
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("'{s}' is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size: bytes, or `10KB`, `5MB`, `10GB`.",
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]+ *(B|KB|MB|GB|TB)?$"},
                {"type": "integer", "minimum": 0}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn sizes_parse() {
        assert_eq!("512".parse::<ByteSize>(), Ok(ByteSize(512)));
        assert_eq!("10KB".parse::<ByteSize>(), Ok(ByteSize(10 << 10)));
        assert_eq!("2 GiB".parse::<ByteSize>(), Ok(ByteSize(2 << 30)));
        assert!("ten".parse::<ByteSize>().is_err());
        assert!(
            "5PB"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("unknown size unit")
        );
    }
}
