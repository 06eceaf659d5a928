//! Contact links and group invitations, as validated values.
//!
//! Their text form (`veil://…` and the QR form) is in `veil-proto`, which
//! sits above this crate.

use crate::{
    AccountPublic, Error, GroupKeys, GroupSecret, MemberKeys, Result, Signature, VerifyKey,
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

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a contact link carries: enough to find the account and start the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactLink {
    /// The account to contact.
    pub account: AccountPublic,
    /// The current rendezvous seed (reset = new seed = every old link stops working).
    pub seed: RendezvousSeed,
    /// An optional display name.
    pub display_name: Option<Name>,
}

/// An invitation to a multi-member group, signed by the inviting member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInvitation {
    /// The group's root secret.
    pub secret: GroupSecret,
    /// An optional group name.
    pub name: Option<Name>,
    /// When the invitation stops being honoured by members, if ever.
    pub expires_at: Option<UnixTime>,
    /// The inviting member's key in this group.
    pub inviter: VerifyKey,
    /// The inviter's signature over the invitation.
    pub signature: Signature,
}

fn invitation_message(keys: &GroupKeys, name: Option<&Name>, expires_at: Option<UnixTime>) -> Vec<u8> {
    let mut m = label::INVITATION.to_vec();
    m.extend_from_slice(&keys.id.0);
    put_lp(&mut m, name.map(Name::as_str).unwrap_or("").as_bytes());
    m.extend_from_slice(&expires_at.map_or(0, |t| t.0).to_be_bytes());
    m
}

impl GroupInvitation {
    /// Issues an invitation to the group of `secret`, signed by `inviter`
    /// (the inviting account's member keys in that group).
    pub fn issue(secret: &GroupSecret, name: Option<Name>, expires_at: Option<UnixTime>, inviter: &MemberKeys) -> Self {
        let keys = GroupKeys::derive(secret);
        let signature = inviter.signing.sign(&invitation_message(&keys, name.as_ref(), expires_at));
        Self { secret: secret.clone(), name, expires_at, inviter: inviter.signing.verify_key(), signature }
    }

    /// Checks the inviter's signature only.
    pub fn verify_signature(&self) -> Result<()> {
        let keys = GroupKeys::derive(&self.secret);
        self.inviter.verify(&invitation_message(&keys, self.name.as_ref(), self.expires_at), &self.signature)
    }

    /// Checks the signature and, at time `now`, the expiry.
    pub fn verify(&self, now: UnixTime) -> Result<()> {
        self.verify_signature()?;
        match self.expires_at {
            Some(t) if now >= t => Err(Error::Expired { expired_at: t.0, now: now.0 }),
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
        let inv = GroupInvitation::issue(&secret, Name::new("book club").ok(), Some(UnixTime(1000)), &member);
        assert!(inv.verify(UnixTime(999)).is_ok());
        assert!(matches!(inv.verify(UnixTime(1000)), Err(Error::Expired { .. })));
        let mut longer = inv.clone();
        longer.expires_at = Some(UnixTime(5000));
        assert_eq!(longer.verify(UnixTime(999)), Err(Error::BadSignature));
    }
}
