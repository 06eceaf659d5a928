//! # veil-storage
//!
//! Every node keeps its state in one embedded SQLite database, reached through
//! sqlx. Actors above this crate never write SQL: they call typed repository
//! methods on [`Store`].
//!
//! * Migrations are embedded and applied on open; WAL mode, foreign keys on.
//!   A file that is not SQLite, is truncated, or was written by a newer
//!   schema is refused with a clear error and never modified.
//! * Private keys, group secrets, ratchet state and message payloads are
//!   sealed with AES-256-GCM under a storage key that comes from a passphrase
//!   (Argon2id) or from a 0600 key file ([`keystore`]).
//! * Appending an entry, updating the ratchet and enqueuing outbox rows happen
//!   in one transaction ([`Store::append`]).
//!
//! ```
//! use veil_crypto::{Identity, OsEntropy};
//! use veil_storage::{Store, StoreOptions, keystore::{KdfParams, KeySource}};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let key = KeySource::KeyFile(dir.path().join("storage.key"));
//! let options = StoreOptions { kdf: KdfParams::FAST_INSECURE_FOR_TESTS, ..StoreOptions::default() };
//! let store = Store::create(&dir.path().join("veil.db"), &key, options.clone()).await?;
//! let me = Identity::generate(&mut OsEntropy)?;
//! store.save_identity(&me).await?;
//! store.close().await?;
//!
//! let store = Store::open(&dir.path().join("veil.db"), &key, options).await?;
//! // Private keys come out for the holder of the store's key access only
//! // (a node's identity vault).
//! let keys = store.key_access()?;
//! let loaded = store.load_identity(&keys).await?.expect("saved above");
//! assert_eq!(loaded.account.public(), me.account.public());
//! # Ok(())
//! # }
//! ```

mod access;
mod account;
mod backup;
mod contacts;
mod db;
mod entries;
mod error;
mod forget;
mod groups;
pub mod keystore;
mod links;
mod outbox;
mod private;
mod ratchet;
mod replicas;
mod rows;
mod script;
mod settings;
mod sqlite;
mod sync;

pub use access::KeyAccess;
pub use account::DeviceRecord;
pub use backup::{DeviceCopy, MAX_DEVICE_COPY, ReceivedCopy};
pub use contacts::{ContactRecord, ContactState};
pub use db::{Store, StoreOptions};
pub use entries::{Appended, EntryRecord, NewEntry, RatchetUpdate};
pub use error::{Error, Result};
pub use groups::{GroupDeviceKey, GroupKind, GroupRecord};
pub use links::{LinkLimits, LinkState, RetiredLink};
pub use outbox::{Addressee, OutboxItem};
pub use ratchet::SenderChainRecord;
pub use replicas::ReplicaEntry;
pub use sqlite::{Durability, Tuning};
pub use sync::Unsynced;
