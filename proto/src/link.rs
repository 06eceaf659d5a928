//! The text forms of contact links and group invitations.
//!
//! * URI: `veil://contact/<base64url(payload)>` and `veil://group/<…>`, for
//!   sharing as text;
//! * QR: `VEIL://C/<base45(payload)>` and `VEIL://G/<…>`, which use only the
//!   characters of a QR code's compact alphanumeric mode.
//!
//! `payload = protobuf ‖ check`, where `check` is the first 4 bytes of
//! `SHA-256("veil/v1/link-check" ‖ kind ‖ protobuf)` and `kind` is `c`, `g`,
//! `r` or `d`: a mistyped or truncated link is reported as damaged instead of
//! decoding to another, valid-looking link.
//!
//! Device-link offers (`veil://device/…`, QR `VEIL://D/…`, kind `d`) are
//! read by [`parse_device_offer`] only: [`parse`] refuses them, so an offer
//! pasted where a contact link is expected goes no further. They carry a
//! one-time secret, so their text comes back in a [`Zeroizing`] string and
//! the buffers on the way are wiped.
//!
//! ```
//! use veil_crypto::{time::UnixTime, DeviceOffer, Identity, OsEntropy};
//! use veil_proto::link;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let me = Identity::generate(&mut OsEntropy)?;
//! let offer = DeviceOffer::new(me.account.public(), UnixTime(1_800_000_600), &mut OsEntropy)?;
//! let uri = link::device_offer_uri(&offer);
//! assert!(uri.starts_with("veil://device/"));
//! assert_eq!(link::parse_device_offer(&uri)?, offer);
//! assert_eq!(link::parse_device_offer(&link::device_offer_qr(&offer))?, offer);
//! assert!(link::parse(&uri).is_err(), "not a contact link");
//! # Ok(())
//! # }
//! ```

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use prost::Message;
use sha2::{Digest, Sha256};
use veil_crypto::{
    AccountPublic, AgreementPublic, ContactLink, DeviceOffer, EntryAuthKey, EpochSecret, GroupInvitation, GroupKey,
    GroupSecret, MAX_INVITATION_EPOCHS, OfferSecret, RendezvousSeed, ReplicationCredential, ReplicationId, Signature,
    VerifyKey, time::UnixTime,
};
use zeroize::{Zeroize, Zeroizing};

use crate::{
    Error, Result, base45,
    error::decode_err,
    fields::{fixed, name_text, optional_name, version},
    pb,
};

/// Longest link text accepted, in bytes (checked before any decoding).
pub const MAX_LINK_TEXT: usize = 2048;
/// Longest link payload (protobuf and checksum), in bytes: room for an
/// invitation listing the most epochs.
pub const MAX_LINK_PAYLOAD: usize = 1024;
/// The link format version this build writes and reads.
pub const LINK_VERSION: u32 = 1;

const CHECK_LABEL: &[u8] = b"veil/v1/link-check";
const CHECK_LEN: usize = 4;

/// A decoded link of either kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// A `veil://contact/…` link or its `VEIL://C/…` QR form.
    Contact(ContactLink),
    /// A `veil://group/…` invitation or its QR form; its signature is checked, its expiry is not.
    Group(GroupInvitation),
    /// A `veil://replica/…` credential for a blind replication node, or its QR form.
    Replica(ReplicationCredential),
}

#[derive(Clone, Copy)]
enum Kind {
    Contact,
    Group,
    Replica,
    Device,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Contact => b'c',
            Kind::Group => b'g',
            Kind::Replica => b'r',
            Kind::Device => b'd',
        }
    }
    fn uri_prefix(self) -> &'static str {
        match self {
            Kind::Contact => "veil://contact/",
            Kind::Group => "veil://group/",
            Kind::Replica => "veil://replica/",
            Kind::Device => "veil://device/",
        }
    }
    fn qr_prefix(self) -> &'static str {
        match self {
            Kind::Contact => "VEIL://C/",
            Kind::Group => "VEIL://G/",
            Kind::Replica => "VEIL://R/",
            Kind::Device => "VEIL://D/",
        }
    }
}

fn check(kind: Kind, proto: &[u8]) -> [u8; CHECK_LEN] {
    let digest = Sha256::new().chain_update(CHECK_LABEL).chain_update([kind.tag()]).chain_update(proto).finalize();
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&digest[..CHECK_LEN]);
    out
}

fn payload(kind: Kind, proto: Vec<u8>) -> Vec<u8> {
    let mut p = proto;
    let c = check(kind, &p);
    p.extend_from_slice(&c);
    p
}

fn contact_to_pb(link: &ContactLink) -> pb::ContactLink {
    pb::ContactLink {
        version: LINK_VERSION,
        account_signing_key: link.account.signing.to_bytes().to_vec(),
        account_agreement_key: link.account.agreement.0.to_vec(),
        rendezvous_seed: link.seed.expose_secret().to_vec(),
        display_name: name_text(link.display_name.as_ref()),
    }
}

fn contact_from_pb(m: pb::ContactLink) -> Result<ContactLink> {
    version("contact link", m.version, LINK_VERSION)?;
    Ok(ContactLink {
        account: AccountPublic {
            signing: VerifyKey::from_slice(&m.account_signing_key)?,
            agreement: AgreementPublic(fixed("account agreement key", &m.account_agreement_key)?),
        },
        seed: RendezvousSeed::from_bytes(fixed("rendezvous seed", &m.rendezvous_seed)?),
        display_name: optional_name(&m.display_name)?,
    })
}

fn invitation_to_pb(inv: &GroupInvitation) -> pb::GroupInvitation {
    pb::GroupInvitation {
        version: LINK_VERSION,
        group_secret: inv.secret.expose_secret().to_vec(),
        name: name_text(inv.name.as_ref()),
        expires_at: inv.expires_at.map_or(0, |t| t.0),
        inviter: inv.inviter.to_bytes().to_vec(),
        signature: inv.signature.0.to_vec(),
        epoch_secrets: inv.epochs.iter().map(|e| e.expose_secret().to_vec()).collect(),
    }
}

fn invitation_from_pb(m: pb::GroupInvitation) -> Result<GroupInvitation> {
    version("group invitation", m.version, LINK_VERSION)?;
    if m.epoch_secrets.len() > MAX_INVITATION_EPOCHS {
        return Err(Error::TooMany {
            what: "invitation epochs",
            count: m.epoch_secrets.len(),
            max: MAX_INVITATION_EPOCHS,
        });
    }
    let epochs = m
        .epoch_secrets
        .iter()
        .map(|e| Ok(EpochSecret::from_bytes(fixed("epoch secret", e)?)))
        .collect::<Result<Vec<_>>>()?;
    let inv = GroupInvitation {
        secret: GroupSecret::from_bytes(fixed("group secret", &m.group_secret)?),
        name: optional_name(&m.name)?,
        expires_at: (m.expires_at != 0).then_some(UnixTime(m.expires_at)),
        inviter: VerifyKey::from_slice(&m.inviter)?,
        signature: Signature(fixed("invitation signature", &m.signature)?),
        epochs,
    };
    // The signature is checked at decode time; expiry is the caller's call
    // (it depends on the clock): see `GroupInvitation::verify`.
    inv.verify_signature()?;
    Ok(inv)
}

/// The `veil://contact/…` form of `link`.
pub fn contact_uri(link: &ContactLink) -> String {
    let p = payload(Kind::Contact, contact_to_pb(link).encode_to_vec());
    format!("{}{}", Kind::Contact.uri_prefix(), URL_SAFE_NO_PAD.encode(p))
}

/// The QR form (`VEIL://C/…`) of `link`.
pub fn contact_qr(link: &ContactLink) -> String {
    let p = payload(Kind::Contact, contact_to_pb(link).encode_to_vec());
    format!("{}{}", Kind::Contact.qr_prefix(), base45::encode(&p))
}

/// The `veil://group/…` form of `invitation`.
pub fn invitation_uri(invitation: &GroupInvitation) -> String {
    let p = payload(Kind::Group, invitation_to_pb(invitation).encode_to_vec());
    format!("{}{}", Kind::Group.uri_prefix(), URL_SAFE_NO_PAD.encode(p))
}

/// The QR form (`VEIL://G/…`) of `invitation`.
pub fn invitation_qr(invitation: &GroupInvitation) -> String {
    let p = payload(Kind::Group, invitation_to_pb(invitation).encode_to_vec());
    format!("{}{}", Kind::Group.qr_prefix(), base45::encode(&p))
}

/// Parses any link: URI or QR form, contact or group. Surrounding whitespace
/// is ignored; everything else must be exact. Group invitations are returned
/// only if their signature verifies (expiry is checked by the caller against
/// its clock with [`GroupInvitation::verify`]).
pub fn parse(text: &str) -> Result<Link> {
    let text = text.trim();
    if text.len() > MAX_LINK_TEXT {
        return Err(Error::TooLarge { what: "link text", len: text.len(), max: MAX_LINK_TEXT });
    }
    if is_kind(Kind::Device, text) {
        return Err(Error::Invalid { what: "link", reason: "this is a device-link offer, for joining an account" });
    }
    for kind in [Kind::Contact, Kind::Group, Kind::Replica] {
        let bytes = if let Some(rest) = text.strip_prefix(kind.uri_prefix()) {
            URL_SAFE_NO_PAD.decode(rest).map_err(|_| Error::BadText("invalid base64url"))?
        } else if let Some(rest) = text.strip_prefix(kind.qr_prefix()) {
            base45::decode(rest)?
        } else {
            continue;
        };
        return decode_payload(kind, &bytes);
    }
    Err(Error::NotALink)
}

/// Parses a contact link (either form); a group invitation is refused.
pub fn parse_contact(text: &str) -> Result<ContactLink> {
    match parse(text)? {
        Link::Contact(c) => Ok(c),
        Link::Group(_) => {
            Err(Error::Invalid { what: "link", reason: "this is a group invitation, not a contact link" })
        }
        Link::Replica(_) => Err(Error::Invalid { what: "link", reason: "this is a replication credential" }),
    }
}

/// Parses a group invitation (either form); a contact link is refused.
pub fn parse_invitation(text: &str) -> Result<GroupInvitation> {
    match parse(text)? {
        Link::Group(g) => Ok(g),
        Link::Contact(_) => {
            Err(Error::Invalid { what: "link", reason: "this is a contact link, not a group invitation" })
        }
        Link::Replica(_) => Err(Error::Invalid { what: "link", reason: "this is a replication credential" }),
    }
}

/// The `veil://replica/…` form of a replication credential.
pub fn replication_uri(credential: &ReplicationCredential) -> String {
    let m = pb::ReplicationCredential {
        version: LINK_VERSION,
        replication_id: credential.replication_id.0.to_vec(),
        link_key: credential.position_key.expose_secret().to_vec(),
        entry_auth_key: credential.entry_auth_key.expose_secret().to_vec(),
    };
    let p = payload(Kind::Replica, m.encode_to_vec());
    format!("{}{}", Kind::Replica.uri_prefix(), URL_SAFE_NO_PAD.encode(p))
}

/// Parses a replication credential (either form); other links are refused.
pub fn parse_replication(text: &str) -> Result<ReplicationCredential> {
    match parse(text)? {
        Link::Replica(r) => Ok(r),
        _ => Err(Error::Invalid { what: "link", reason: "not a replication credential" }),
    }
}

/// Whether `text` starts like a link of `kind` (either form).
fn is_kind(kind: Kind, text: &str) -> bool {
    text.starts_with(kind.uri_prefix()) || text.starts_with(kind.qr_prefix())
}

/// The protobuf inside a payload of `kind`, once its size and checksum are right.
fn checked(kind: Kind, bytes: &[u8]) -> Result<&[u8]> {
    if bytes.len() > MAX_LINK_PAYLOAD {
        return Err(Error::TooLarge { what: "link payload", len: bytes.len(), max: MAX_LINK_PAYLOAD });
    }
    if bytes.len() < CHECK_LEN {
        return Err(Error::BadText("truncated"));
    }
    let (proto, sum) = bytes.split_at(bytes.len() - CHECK_LEN);
    if check(kind, proto) != sum {
        return Err(Error::Checksum);
    }
    Ok(proto)
}

fn decode_payload(kind: Kind, bytes: &[u8]) -> Result<Link> {
    let proto = checked(kind, bytes)?;
    match kind {
        Kind::Contact => {
            let m = pb::ContactLink::decode(proto).map_err(decode_err("contact link"))?;
            Ok(Link::Contact(contact_from_pb(m)?))
        }
        Kind::Group => {
            let m = pb::GroupInvitation::decode(proto).map_err(decode_err("group invitation"))?;
            Ok(Link::Group(invitation_from_pb(m)?))
        }
        Kind::Replica => {
            let m = pb::ReplicationCredential::decode(proto).map_err(decode_err("replication credential"))?;
            version("replication credential", m.version, LINK_VERSION)?;
            Ok(Link::Replica(ReplicationCredential {
                replication_id: ReplicationId(fixed("replication id", &m.replication_id)?),
                position_key: GroupKey::from_bytes(fixed("link key", &m.link_key)?),
                entry_auth_key: EntryAuthKey::from_bytes(fixed("entry-auth key", &m.entry_auth_key)?),
            }))
        }
        Kind::Device => {
            Err(Error::Invalid { what: "link", reason: "this is a device-link offer, for joining an account" })
        }
    }
}

/// The payload of a device-link offer, `protobuf ‖ check` (the bytes its
/// text forms encode), in a buffer wiped on drop.
pub fn device_offer_payload(offer: &DeviceOffer) -> Zeroizing<Vec<u8>> {
    let mut m = pb::DeviceOffer {
        version: LINK_VERSION,
        account_signing_key: offer.account.signing.to_bytes().to_vec(),
        account_agreement_key: offer.account.agreement.0.to_vec(),
        secret: offer.secret.expose_secret().to_vec(),
        expires_at: offer.expires_at.0,
    };
    let proto = Zeroizing::new(m.encode_to_vec());
    m.secret.zeroize();
    let mut p = Zeroizing::new(Vec::with_capacity(proto.len() + CHECK_LEN));
    p.extend_from_slice(&proto);
    p.extend_from_slice(&check(Kind::Device, &proto));
    p
}

/// The `veil://device/…` form of `offer`.
pub fn device_offer_uri(offer: &DeviceOffer) -> Zeroizing<String> {
    let p = device_offer_payload(offer);
    let prefix = Kind::Device.uri_prefix();
    let len = base64::encoded_len(p.len(), false).unwrap_or(0);
    let mut out = Zeroizing::new(String::with_capacity(prefix.len() + len));
    out.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(&p[..], &mut out);
    out
}

/// The QR form (`VEIL://D/…`) of `offer`.
pub fn device_offer_qr(offer: &DeviceOffer) -> Zeroizing<String> {
    let p = device_offer_payload(offer);
    let prefix = Kind::Device.qr_prefix();
    let mut out = Zeroizing::new(String::with_capacity(prefix.len() + base45::encoded_len(p.len())));
    out.push_str(prefix);
    base45::encode_into(&p, &mut out);
    out
}

/// Parses a device-link offer, either form (surrounding whitespace is
/// ignored). Its expiry is checked by the handshake against the caller's
/// clock ([`JoiningDevice::start`](veil_crypto::device_link::JoiningDevice::start)).
pub fn parse_device_offer(text: &str) -> Result<DeviceOffer> {
    let text = text.trim();
    if text.len() > MAX_LINK_TEXT {
        return Err(Error::TooLarge { what: "link text", len: text.len(), max: MAX_LINK_TEXT });
    }
    let kind = Kind::Device;
    let bytes = Zeroizing::new(if let Some(rest) = text.strip_prefix(kind.uri_prefix()) {
        URL_SAFE_NO_PAD.decode(rest).map_err(|_| Error::BadText("invalid base64url"))?
    } else if let Some(rest) = text.strip_prefix(kind.qr_prefix()) {
        base45::decode(rest)?
    } else if [Kind::Contact, Kind::Group, Kind::Replica].into_iter().any(|k| is_kind(k, text)) {
        return Err(Error::Invalid { what: "link", reason: "this is not a device-link offer" });
    } else {
        return Err(Error::NotALink);
    });
    parse_device_offer_payload(&bytes)
}

/// Parses the payload of a device-link offer ([`device_offer_payload`]).
pub fn parse_device_offer_payload(bytes: &[u8]) -> Result<DeviceOffer> {
    let proto = checked(Kind::Device, bytes)?;
    let mut m = pb::DeviceOffer::decode(proto).map_err(decode_err("device-link offer"))?;
    let offer = device_offer_from_pb(&m);
    m.secret.zeroize();
    offer
}

fn device_offer_from_pb(m: &pb::DeviceOffer) -> Result<DeviceOffer> {
    version("device-link offer", m.version, LINK_VERSION)?;
    if m.expires_at == 0 {
        return Err(Error::Invalid { what: "device-link offer", reason: "an offer must expire" });
    }
    Ok(DeviceOffer {
        account: AccountPublic {
            signing: VerifyKey::from_slice(&m.account_signing_key)?,
            agreement: AgreementPublic(fixed("account agreement key", &m.account_agreement_key)?),
        },
        secret: OfferSecret::from_bytes(fixed("offer secret", &m.secret)?),
        expires_at: UnixTime(m.expires_at),
    })
}
