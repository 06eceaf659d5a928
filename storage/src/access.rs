//! Who may read private keys out of a store.
//!
//! The identity and this device's key in every group are sealed at rest
//! and unsealed only for the holder of the store's [`KeyAccess`], which a
//! store hands out once: a node gives it to its identity vault, so no other
//! part of the node can read a private key out of the database, however it
//! holds the store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{Error, Result};

/// The right to read one store's private keys ([`Store::key_access`]).
///
/// [`Store::key_access`]: crate::Store::key_access
pub struct KeyAccess {
    store: u64,
}

impl core::fmt::Debug for KeyAccess {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KeyAccess")
    }
}

/// A store's side: its instance number and whether the access was taken.
pub(crate) struct KeyGate {
    store: u64,
    taken: AtomicBool,
}

impl KeyGate {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self { store: NEXT.fetch_add(1, Ordering::Relaxed), taken: AtomicBool::new(false) }
    }

    /// The access, the first time only.
    pub(crate) fn take(&self) -> Result<KeyAccess> {
        if self.taken.swap(true, Ordering::SeqCst) {
            return Err(Error::KeyAccessTaken);
        }
        Ok(KeyAccess { store: self.store })
    }

    /// Whether `access` is this store's.
    pub(crate) fn check(&self, access: &KeyAccess) -> Result<()> {
        if access.store != self.store {
            return Err(Error::Invalid { what: "key access", reason: "it was handed out by another store" });
        }
        Ok(())
    }
}
