//! The nine task kinds, one module each. Every module holds the kind's
//! settings (part of the pipeline file format), its checks at validation
//! time, and how it runs.

pub mod archive;
pub mod command;
pub mod notify;
pub mod quality;
pub mod sense;
pub mod sql;
pub mod validate_file;
pub mod validate_rows;
pub mod write;
