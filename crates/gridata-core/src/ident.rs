//! `namespace.table` names.

use std::fmt;

use crate::{Error, Result};

/// A table name: a (possibly nested) namespace and a table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// Namespace levels, outermost first.
    pub namespace: Vec<String>,
    /// The table's own name.
    pub name: String,
}

impl TableName {
    /// Parse `ns.table` or `ns.sub.table`.
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() < 2 {
            return Err(Error::InvalidName {
                name: s.to_string(),
                reason: "expected <namespace>.<table>".into(),
            });
        }
        for p in &parts {
            validate_part(s, p)?;
        }
        let (name, ns) = parts.split_last().expect("len >= 2");
        Ok(Self {
            namespace: ns.iter().map(|p| p.to_string()).collect(),
            name: name.to_string(),
        })
    }

    /// The namespace joined with dots, as the JDBC catalog stores it.
    pub fn namespace_str(&self) -> String {
        self.namespace.join(".")
    }
}

/// Check one level of a namespace or a table name.
pub fn validate_part(full: &str, part: &str) -> Result<()> {
    let ok = !part.is_empty()
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !part.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            name: full.to_string(),
            reason: format!(
                "'{part}' must be non-empty, start with a letter or '_', and use only letters, digits, '_' and '-'"
            ),
        })
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace_str(), self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_names() {
        let t = TableName::parse("ecommerce.orders").unwrap();
        assert_eq!(t.namespace, vec!["ecommerce"]);
        assert_eq!(t.name, "orders");
        let t = TableName::parse("a.b.c").unwrap();
        assert_eq!(t.namespace_str(), "a.b");
        assert_eq!(t.to_string(), "a.b.c");
    }

    #[test]
    fn rejects_bad_names() {
        assert!(TableName::parse("orders").is_err());
        assert!(TableName::parse("a..b").is_err());
        assert!(TableName::parse("a.b c").is_err());
        assert!(TableName::parse("a.1b").is_err());
    }
}
