//! Contact links and group invitations, as validated values.
//!
//! Their text form (`veil://…` and the QR form) is in `veil-proto`, which
//! sits above this crate.

use crate::{
    AccountPublic, EpochSecret, Error, GroupKeys, GroupSecret, MemberKeys, Result, Signature, VerifyKey,
    kdf::{label, put_lp},
    rendezvous::RendezvousSeed,
    time::UnixTime,
};

/// Longest display or group name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;

/// A display name or group name: 1 to 64 bytes of UTF-8 without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self> {
        if name.is_empty() {
            return Err(Error::Malformed { what: "name", reason: "empty" });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(Error::TooLarge { what: "name", len: name.len(), max: MAX_NAME_LEN });
        }
        if name.chars().any(char::is_control) {
            return Err(Error::Malformed { what: "name", reason: "contains control characters" });
        }
        Ok(Self(name.to_owned()))
    }

    /// The validated text, exactly as given (not trimmed or normalised).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a contact link carries: enough to find the account and start the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactLink {
    /// The link owner's account: the handshake checks its Ed25519 key at message 2 and uses its X25519 key as the Noise
    /// responder key.
    pub account: AccountPublic,
    /// The current rendezvous seed (reset = new seed = every old link stops working).
    pub seed: RendezvousSeed,
    /// The name the owner introduces itself by, readable by anyone holding the link; `None` if it gave none.
    pub display_name: Option<Name>,
}

/// An invitation to a multi-member group, signed by the inviting member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInvitation {
    /// The group's root secret.
    pub secret: GroupSecret,
    /// The group's name as the inviter gave it, covered by the inviter's signature.
    pub name: Option<Name>,
    /// When the invitation stops being honoured by members, if ever.
    pub expires_at: Option<UnixTime>,
    /// The inviting member's key in this group.
    pub inviter: VerifyKey,
    /// The inviter's signature over the invitation.
    pub signature: Signature,
    /// The secrets of the group's epochs after the root one, oldest first
    /// (at most [`MAX_INVITATION_EPOCHS`]); the last is the current one.
    /// Empty while the group has never been re-keyed.
    pub epochs: Vec<EpochSecret>,
}

/// Most epoch secrets an invitation carries.
pub const MAX_INVITATION_EPOCHS: usize = 16;

/// What the inviter signs; epoch ids are appended only when there are
/// epochs, so invitations to never re-keyed groups sign what they always did.
fn invitation_message(
    keys: &GroupKeys,
    name: Option<&Name>,
    expires_at: Option<UnixTime>,
    epochs: &[EpochSecret],
) -> Vec<u8> {
    let mut m = label::INVITATION.to_vec();
    m.extend_from_slice(&keys.id.0);
    put_lp(&mut m, name.map(Name::as_str).unwrap_or("").as_bytes());
    m.extend_from_slice(&expires_at.map_or(0, |t| t.0).to_be_bytes());
    for epoch in epochs {
        m.extend_from_slice(&keys.epoch(epoch).0.0);
    }
    m
}

impl GroupInvitation {
    /// Issues an invitation to the group of `secret`, signed by `inviter`
    /// (the inviting account's member keys in that group).
    /// `epochs` are the group's epoch secrets after the root, oldest first.
    pub fn issue(
        secret: &GroupSecret,
        name: Option<Name>,
        expires_at: Option<UnixTime>,
        epochs: Vec<EpochSecret>,
        inviter: &MemberKeys,
    ) -> Result<Self> {
        if epochs.len() > MAX_INVITATION_EPOCHS {
            return Err(Error::TooMany { what: "invitation epochs", count: epochs.len(), max: MAX_INVITATION_EPOCHS });
        }
        let keys = GroupKeys::derive(secret);
        let signature = inviter.signing.sign(&invitation_message(&keys, name.as_ref(), expires_at, &epochs));
        Ok(Self { secret: secret.clone(), name, expires_at, inviter: inviter.signing.verify_key(), signature, epochs })
    }

    /// Checks the inviter's signature only.
    pub fn verify_signature(&self) -> Result<()> {
        let keys = GroupKeys::derive(&self.secret);
        let message = invitation_message(&keys, self.name.as_ref(), self.expires_at, &self.epochs);
        self.inviter.verify(&message, &self.signature)
    }

    /// Checks the signature and, at time `now`, the expiry.
    pub fn verify(&self, now: UnixTime) -> Result<()> {
        self.verify_signature()?;
        match self.expires_at {
            Some(t) if now >= t => Err(Error::Expired { what: "invitation", expired_at: t.0, now: now.0 }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AliasKey, secret::OsEntropy};

    #[test]
    fn names_are_validated() {
        assert!(Name::new("Alice 🐇").is_ok());
        assert!(Name::new("").is_err());
        assert!(Name::new("a\nb").is_err());
        assert!(Name::new(&"x".repeat(65)).is_err());
    }

    #[test]
    fn invitation_signature_and_expiry() {
        let secret = GroupSecret::generate(&mut OsEntropy).unwrap();
        let member = AliasKey::generate(&mut OsEntropy).unwrap().member_keys(&GroupKeys::derive(&secret).id);
        let inv =
            GroupInvitation::issue(&secret, Name::new("book club").ok(), Some(UnixTime(1000)), Vec::new(), &member)
                .unwrap();
        assert!(inv.verify(UnixTime(999)).is_ok());
        assert!(matches!(inv.verify(UnixTime(1000)), Err(Error::Expired { .. })));
        let mut longer = inv.clone();
        longer.expires_at = Some(UnixTime(5000));
        assert_eq!(longer.verify(UnixTime(999)), Err(Error::BadSignature));
    }

    #[test]
    fn invitation_signature_covers_its_epochs() {
        let secret = GroupSecret::generate(&mut OsEntropy).unwrap();
        let member = AliasKey::generate(&mut OsEntropy).unwrap().member_keys(&GroupKeys::derive(&secret).id);
        let epochs = vec![EpochSecret::from_bytes([1; 32]), EpochSecret::from_bytes([2; 32])];
        let inv = GroupInvitation::issue(&secret, None, None, epochs, &member).unwrap();
        assert!(inv.verify_signature().is_ok());
        let mut swapped = inv.clone();
        swapped.epochs[1] = EpochSecret::from_bytes([3; 32]);
        assert_eq!(swapped.verify_signature(), Err(Error::BadSignature));
        let mut dropped = inv;
        dropped.epochs.pop();
        assert_eq!(dropped.verify_signature(), Err(Error::BadSignature));
        let too_many = vec![EpochSecret::from_bytes([1; 32]); MAX_INVITATION_EPOCHS + 1];
        assert!(GroupInvitation::issue(&secret, None, None, too_many, &member).is_err());
    }
}
