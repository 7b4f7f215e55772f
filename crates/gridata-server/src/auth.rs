//! Bearer tokens and roles.
//!
//! Invariants:
//! - Only the SHA-256 of a token is stored; the secret is shown once.
//! - Roles are ordered: viewer < operator < admin. A viewer reads, an
//!   operator also triggers, clears, cancels, pauses and backfills, an
//!   admin also rolls tables back and manages tokens and pools.
//! - With no token in the store, the server is open but bound to loopback.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Read, trigger, clear, cancel, pause, backfill.
    Operator,
    /// Everything, including rollback and tokens.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role '{other}' (viewer, operator or admin)"
            )),
        }
    }
}

/// The stored hash of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new token: `gdt_<id>_<secret>`, and its id.
pub fn generate() -> (String, String) {
    let mut secret = [0u8; 24];
    rand::rng().fill_bytes(&mut secret);
    let mut id = [0u8; 6];
    rand::rng().fill_bytes(&mut id);
    let id = hex::encode(id);
    (format!("gdt_{id}_{}", hex::encode(secret)), id)
}

/// Create a token in the store; returns the secret (shown once) and its
/// record.
pub async fn create(
    store: &dyn gridata_state::Store,
    name: &str,
    role: Role,
    pii: bool,
    now_ms: i64,
) -> gridata_state::Result<(String, gridata_state::TokenRecord)> {
    let (token, id) = generate();
    let record = gridata_state::TokenRecord {
        token_id: id,
        name: name.to_string(),
        role: role.to_string(),
        secret_hash: hash(&token),
        created_ms: now_ms,
        revoked: false,
        pii: pii || role == Role::Admin,
    };
    store.create_token(&record).await?;
    Ok((token, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_tokens_are_unique() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
        let (a, ida) = generate();
        let (b, _) = generate();
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("gdt_{ida}_")));
        assert_eq!(hash(&a).len(), 64);
    }
}
