//! Messages of the `Replica` (blind replication).

use super::*;

/// Command: start replicating the group a credential names (stored, so
/// it survives restarts). `false` if it already was.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool>")]
pub struct AddReplica {
    /// The group's replication credential.
    pub credential: veil_crypto::ReplicationCredential,
}
