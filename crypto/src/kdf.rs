//! HKDF-SHA256 and HMAC-SHA256 helpers, and the protocol's domain-separation labels.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Every label the protocol feeds to a KDF, MAC or signature. Each primitive
/// use has its own label, so no key or signature can be replayed in another role.
pub mod label {
    /// Salt for per-group member keys derived from the alias key.
    pub const MEMBER_KEY: &[u8] = b"veil/v1/member-key";
    /// Signature context: a member certifies a device key for one group.
    pub const DEVICE_CERT: &[u8] = b"veil/v1/device-cert";
    /// Salt for the contact-group secret.
    pub const CONTACT_GROUP: &[u8] = b"veil/v1/contact-group";
    /// Salt for the group key schedule.
    pub const GROUP_SCHEDULE: &[u8] = b"veil/v1/group";
    /// Group key schedule output: the group identifier.
    pub const GROUP_ID: &[u8] = b"group-id";
    /// Group key schedule output: the header-encryption key.
    pub const HEADER_KEY: &[u8] = b"header-key";
    /// Group key schedule output: the metadata-log body key.
    pub const METADATA_KEY: &[u8] = b"metadata-key";
    /// Group key schedule output: the link (DAG) encryption key.
    pub const POSITION_KEY: &[u8] = b"link-key";
    /// Group key schedule output: the entry authentication (MAC) key.
    pub const ENTRY_AUTH_KEY: &[u8] = b"entry-auth-key";
    /// Group key schedule output: the replication identifier.
    pub const REPLICATION_ID: &[u8] = b"replication-id";
    /// Group key schedule output: the rendezvous seed.
    pub const RENDEZVOUS_SEED: &[u8] = b"rendezvous-seed";
    /// Rendezvous topic prefix for contact links.
    pub const RDV_CONTACT: &[u8] = b"veil/v1/rdv/contact";
    /// Rendezvous topic for groups.
    pub const RDV_GROUP: &[u8] = b"veil/v1/rdv/group";
    /// HKDF info of one ratchet step.
    pub const RATCHET_STEP: &[u8] = b"veil/v1/ratchet-step";
    /// Salt for sealing to an X25519 key.
    pub const SEAL: &[u8] = b"veil/v1/seal";
    /// Signature context of a log entry.
    pub const ENTRY_SIG: &[u8] = b"veil/v1/entry-sig";
    /// MAC context of a log entry.
    pub const ENTRY_MAC: &[u8] = b"veil/v1/entry-mac";
    /// Hash context of a log entry.
    pub const ENTRY_HASH: &[u8] = b"veil/v1/entry-hash";
    /// Noise prologue of the contact handshake.
    pub const HANDSHAKE_PROLOGUE: &[u8] = b"veil/v1/contact-handshake";
    /// Signature context: the responder proves its account.
    pub const HANDSHAKE_RESPONDER: &[u8] = b"veil/v1/handshake-responder";
    /// Signature context: the requester proves its account.
    pub const HANDSHAKE_REQUESTER: &[u8] = b"veil/v1/handshake-requester";
    /// Signature context of a group invitation.
    pub const INVITATION: &[u8] = b"veil/v1/invitation";
    /// Associated data of a sealed sender-chain state.
    pub const CHAIN_SHARE: &[u8] = b"veil/v1/chain-share";
    /// A contact request's proof that it knows the current link point.
    pub const POINT_PROOF: &[u8] = b"veil/v1/point-proof";
    /// The tag naming a group on one connection between two peers.
    pub const SESSION_TAG: &[u8] = b"veil/v1/session-tag";
    /// A proof of group membership offered to a nearby peer.
    pub const NEARBY_TOKEN: &[u8] = b"veil/v1/nearby";
    /// Prefix of a BLE advertising token's MAC input.
    pub const BLE_ADVERT: &[u8] = b"veil/v1/ble-advert";
    /// Salt of a group epoch's key schedule (the epoch secret is the input).
    pub const EPOCH_SCHEDULE: &[u8] = b"veil/v1/epoch";
    /// Names an epoch, derived by its key schedule.
    pub const EPOCH_ID: &[u8] = b"epoch-id";
    /// Associated data of an epoch secret sealed to a member.
    pub const EPOCH_SHARE: &[u8] = b"veil/v1/epoch-share";
    /// Salt of the seeds a replication node and members meet and talk under.
    pub const REPLICA_SCHEDULE: &[u8] = b"veil/v1/replica";
    /// Seeds the rotating points a replication node announces at.
    pub const REPLICA_RENDEZVOUS: &[u8] = b"replica-rendezvous-seed";
    /// Seeds the session tags between members and a replication node.
    pub const REPLICA_SESSION: &[u8] = b"replica-session-seed";
    /// Topic of a replication node's rendezvous points.
    pub const RDV_REPLICA: &[u8] = b"veil/v1/rdv/replica";
    /// Salt of a device's signing key in one epoch of a group.
    pub const EPOCH_DEVICE: &[u8] = b"veil/v1/epoch-device";
    /// Salt of the keys derived from a device-link offer's one-time secret.
    pub const DEVICE_OFFER: &[u8] = b"veil/v1/device-offer";
    /// Device-link offer output: the seed of the rendezvous points the two devices meet at.
    pub const DEVICE_RENDEZVOUS: &[u8] = b"device-rendezvous-seed";
    /// Device-link offer output: the Noise pre-shared key of the device-link handshake.
    pub const DEVICE_PSK: &[u8] = b"device-link-psk";
    /// Rendezvous topic of device-link offers (the offer's seed tells them apart).
    pub const RDV_DEVICE: &[u8] = b"veil/v1/rdv/device";
    /// Noise prologue of the device-link handshake (followed by the offer's account and expiry).
    pub const DEVICE_LINK_PROLOGUE: &[u8] = b"veil/v1/device-link";
    /// Signature context: the first device proves it holds the account key.
    pub const DEVICE_LINK_EXISTING: &[u8] = b"veil/v1/device-link-existing";
    /// Salt of the short code both devices show, from the final handshake hash.
    pub const DEVICE_LINK_CODE: &[u8] = b"veil/v1/device-link-code";
    /// Salt of the secret of the account's own group, from the alias seed.
    pub const ACCOUNT_GROUP: &[u8] = b"veil/v1/account-group";
    /// Salt of a device's agreement key, from its device seed.
    pub const DEVICE_AGREEMENT: &[u8] = b"veil/v1/device-agreement";
    /// AAD prefix of an epoch secret sealed to one device of the author's account.
    pub const EPOCH_DEVICE_SHARE: &[u8] = b"veil/v1/epoch-device-share";
}

/// HKDF-SHA256 extract-then-expand into `N` bytes. `info` parts are concatenated.
pub(crate) fn hkdf<const N: usize>(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; N]> {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    expand(&hk, info)
}

/// HKDF-SHA256 expand from an already uniform 32-byte pseudo-random key.
pub(crate) fn expand_prk<const N: usize>(prk: &[u8; 32], info: &[&[u8]]) -> Zeroizing<[u8; N]> {
    // A 32-byte PRK is always a valid length for SHA-256.
    let hk = match Hkdf::<Sha256>::from_prk(prk) {
        Ok(hk) => hk,
        Err(_) => unreachable!("32 bytes is a valid SHA-256 PRK length"),
    };
    expand(&hk, info)
}

fn expand<const N: usize>(hk: &Hkdf<Sha256>, info: &[&[u8]]) -> Zeroizing<[u8; N]> {
    let mut okm = Zeroizing::new([0u8; N]);
    // N is a compile-time constant far below 255 * 32.
    if hk.expand_multi_info(info, &mut okm[..]).is_err() {
        unreachable!("HKDF output length {N} is within the RFC 5869 limit");
    }
    okm
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time HMAC-SHA256 check.
pub(crate) fn hmac_verify(key: &[u8], parts: &[&[u8]], tag: &[u8; 32]) -> bool {
    let expected = hmac(key, parts);
    subtle::ConstantTimeEq::ct_eq(&expected[..], &tag[..]).into()
}

/// Appends `u32_be(len) ‖ bytes`: the length-prefixed encoding used in transcripts.
pub(crate) fn put_lp(out: &mut Vec<u8>, bytes: &[u8]) {
    // Callers bound every field far below 4 GiB.
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}
