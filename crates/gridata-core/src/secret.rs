//! Secret references: `${env:NAME}` and `${file:PATH}`.
//!
//! A configuration value is either literal text or a reference. References
//! resolve at use; the resolved value is wrapped in [`Secret`], which never
//! prints itself.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A configuration value that may be a secret reference.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretRef(String);

impl SecretRef {
    /// Wrap a raw configuration value.
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// Whether the value is a `${env:..}` or `${file:..}` reference.
    pub fn is_reference(&self) -> bool {
        self.parse().is_some()
    }

    fn parse(&self) -> Option<(&str, &str)> {
        let inner = self.0.strip_prefix("${")?.strip_suffix('}')?;
        let (kind, arg) = inner.split_once(':')?;
        matches!(kind, "env" | "file").then_some((kind, arg))
    }

    /// Check the reference is well formed, without reading anything.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.0.starts_with("${") && self.parse().is_none() {
            return Err(format!(
                "malformed secret reference '{}': use ${{env:NAME}} or ${{file:PATH}}",
                self.0
            ));
        }
        Ok(())
    }

    /// Resolve to the secret value.
    pub fn resolve(&self) -> Result<Secret> {
        match self.parse() {
            Some(("env", name)) => std::env::var(name).map(Secret).map_err(|_| Error::Secret {
                reference: self.0.clone(),
                reason: format!("environment variable {name} is not set"),
            }),
            Some((_, path)) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| Error::Secret {
                    reference: self.0.clone(),
                    reason: format!("cannot read {path}: {e}"),
                }),
            None => {
                self.check().map_err(|reason| Error::Secret {
                    reference: "<literal>".into(),
                    reason,
                })?;
                Ok(Secret(self.0.clone()))
            }
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_reference() {
            write!(f, "{}", self.0)
        } else {
            f.write_str("<redacted>")
        }
    }
}

/// A resolved secret value. It never appears in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself: pass it straight to the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_reference_resolves_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "s3cr3t\n").unwrap();
        let r = SecretRef::new(format!("${{file:{}}}", p.display()));
        let s = r.resolve().unwrap();
        assert_eq!(s.expose(), "s3cr3t");
        assert!(!format!("{s:?} {s}").contains("s3cr3t"));
        assert!(!format!("{:?}", SecretRef::new("literal-key")).contains("literal"));
    }

    #[test]
    fn missing_env_names_the_variable() {
        let err = SecretRef::new("${env:GRIDATA_SURELY_UNSET_VAR}")
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("GRIDATA_SURELY_UNSET_VAR"));
    }

    #[test]
    fn malformed_reference_is_rejected() {
        assert!(SecretRef::new("${vault:x}").check().is_err());
        assert!(SecretRef::new("plain").check().is_ok());
    }
}
