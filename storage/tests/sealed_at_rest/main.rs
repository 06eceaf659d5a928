//! Secrets at rest: after a store has held an identity, a group, sealed
//! messages, ratchet state and a contact link, none of those secrets — nor
//! the payload plaintexts — appear anywhere in the database file or its WAL.
//! And the keystore guards the file: the wrong passphrase, the wrong kind of
//! key, a missing or a foreign key file are all refused with their own error.
//!
//! * `fixture`: a store filled with one of everything secret;
//! * `scan`: searching the files for those secrets;
//! * `keystore`: each kind of key, and every wrong one refused;
//! * `erasure`: forgetting, retention and removed contacts;
//! * `backup`: the backup file;
//! * `file_modes`: file permissions;
//! * `settings`: settings sealed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod backup;
mod erasure;
mod file_modes;
mod fixture;
mod keystore;
mod scan;
mod settings;
