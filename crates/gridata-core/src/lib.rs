//! Shared vocabulary of Gridata: the home layout, configuration with secret
//! references, the injected clock, and table names.
//!
//! Invariants:
//! - Loading configuration never has side effects: it reads files and the
//!   environment, nothing else.
//! - Secret values live only inside [`Secret`], whose `Debug` and `Display`
//!   never print the value.

pub mod clock;
pub mod config;
pub mod error;
pub mod ident;
pub mod secret;
pub mod size;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    CatalogConfig, Config, EngineConfig, Home, OpenLineageConfig, S3Config, StateConfig,
    StorageConfig, ZONES, Zone,
};
pub use error::{Error, Result};
pub use ident::TableName;
pub use secret::{Secret, SecretRef};
pub use size::ByteSize;
