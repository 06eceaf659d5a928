//! The `IdentityVault`: the only actor that holds private keys. It loads the
//! identity from storage (creating one, offline, on first run) and answers
//! with public keys and signatures; keys never leave it, except each
//! period's fresh network key, which the network layer needs.

use crate::supervision::GuardedMap;
use crate::time::{Time, TokioTimers};
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use actix::{Actor, AtomicResponse, Context, Handler, ResponseFuture, Supervised, WrapFuture};
use veil_crypto::{
    ChainState, EpochId, EpochSecret, GroupId, GroupSecret, Identity, MemberKeys, MemberPublic, NetworkKey, OsEntropy,
    SigningSecret, ThreadEntropy, VerifyKey, contact_group_secret,
    envelope::{BodyKey, EntryKind, Position, SealedEntry, begin_entry},
    epoch::{device_agreement_key, epoch_device_key, open_device_epoch_secret, open_epoch_secret},
    handshake::{Requester, Responder},
    ratchet::{open_chain_state, seal_chain_state},
};
use veil_proto::metadata::{ChainShare, MemberJoined};
use veil_storage::{GroupKind, KeyAccess, Store};

use crate::{
    Error, Result,
    messages::vault::{
        AddGroup, AnnounceDevice, AnswerRequest, BeginRequest, ContinueRequest, DeriveContactGroup, GetDeviceKey,
        GetIdentity, GetMemberKeys, GroupRemoved, HandshakeId, IssueInvitation, OpenChainShare, OpenEpochShare,
        PublicIdentity, ReadRequest, ReceivedRequest, RotateNetworkKey, SealMessages, SealedEpochShare, SealedMessages,
        SignEntry,
    },
    supervision::{guarded, load_state},
};

/// Most contact-request handshakes in progress at once (each side); the
/// oldest is dropped beyond this.
const MAX_HANDSHAKES: usize = 64;

/// A handshake waiting for its next message.
enum Pending {
    Requester(Box<Requester>),
    Responder(Box<Responder>),
}

/// A group's device key and kind.
struct GroupDevice {
    kind: GroupKind,
    key: SigningSecret,
}
use std::rc::Rc;

const NAME: &str = "identity-vault";

/// Holds every private key of the node.
pub struct IdentityVault {
    pub(crate) store: Arc<Store>,
    /// The store's key access: private keys come out of the database for
    /// this vault only.
    pub(crate) keys: Arc<KeyAccess>,
    identity: Option<Identity>,
    group_devices: HashMap<GroupId, GroupDevice>,
    handshakes: HashMap<HandshakeId, Pending>,
    handshake_order: VecDeque<HandshakeId>,
    next_handshake: u64,
    /// Device offers and their sessions (see `device_link`).
    pub(crate) offers: crate::device_link::Offers,
    /// Where the store's copy for a new device is made.
    pub(crate) copy_dir: std::path::PathBuf,
    /// Its retries' time.
    time: Time,
}

impl core::fmt::Debug for IdentityVault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IdentityVault").field("loaded", &self.identity.is_some()).finish_non_exhaustive()
    }
}

impl IdentityVault {
    /// A vault over `store`; it loads its keys when started. It takes the
    /// store's key access, so it must be the first and only one asking
    /// ([`veil_storage::Error::KeyAccessTaken`] otherwise).
    pub fn new(store: Arc<Store>) -> Result<Self> {
        let keys = Arc::new(store.key_access()?);
        Ok(Self {
            store,
            keys,
            identity: None,
            group_devices: HashMap::new(),
            handshakes: HashMap::new(),
            handshake_order: VecDeque::new(),
            next_handshake: 0,
            offers: crate::device_link::Offers::default(),
            copy_dir: std::env::temp_dir(),
            time: Arc::new(TokioTimers),
        })
    }

    /// Where it makes the store's copy for a new device (default: the
    /// system's temporary directory; a node uses its data directory).
    pub fn with_copy_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.copy_dir = dir.into();
        self
    }

    /// Where it reads the time for its retries (default: the machine's).
    pub fn with_time(mut self, time: Time) -> Self {
        self.time = time;
        self
    }

    pub(crate) fn identity(&self) -> Result<&Identity> {
        self.identity.as_ref().ok_or(Error::Unavailable(NAME))
    }

    fn device(&self, group: &GroupId) -> Result<&GroupDevice> {
        self.group_devices.get(group).ok_or(Error::UnknownGroup)
    }

    /// This device's signing key in `group` during `epoch`.
    fn device_key(&self, group: &GroupId, epoch: &EpochId) -> Result<SigningSecret> {
        Ok(epoch_device_key(&self.device(group)?.key, epoch))
    }

    /// This account's member keys in `group`: the account keys in a contact
    /// group (the peer knows them already), alias-derived keys otherwise.
    fn member_keys(&self, group: &GroupId) -> Result<MemberKeys> {
        let identity = self.identity()?;
        Ok(match self.device(group)?.kind {
            GroupKind::Contact => {
                MemberKeys { signing: identity.account.signing.clone(), agreement: identity.account.agreement.clone() }
            }
            GroupKind::MultiMember => identity.alias.member_keys(group),
        })
    }

    fn keep_handshake(&mut self, pending: Pending) -> HandshakeId {
        let id = HandshakeId(self.next_handshake);
        self.next_handshake = self.next_handshake.wrapping_add(1);
        if self.handshake_order.len() >= MAX_HANDSHAKES
            && let Some(oldest) = self.handshake_order.pop_front()
        {
            self.handshakes.remove(&oldest);
        }
        self.handshakes.insert(id, pending);
        self.handshake_order.push_back(id);
        id
    }

    fn take_handshake(&mut self, id: HandshakeId) -> Option<Pending> {
        self.handshake_order.retain(|h| *h != id);
        self.handshakes.remove(&id)
    }
}

/// A handshake that is unknown, expired or of the wrong side.
fn no_handshake() -> Error {
    Error::Crypto(veil_crypto::Error::Handshake("no such handshake in progress"))
}

/// Loads (or, on first run, creates and saves) the identity and every
/// group's device key.
async fn load(store: Arc<Store>, keys: Arc<KeyAccess>) -> Result<(Identity, HashMap<GroupId, GroupDevice>)> {
    let identity = match store.load_identity(&keys).await? {
        Some(identity) => identity,
        None => {
            let identity = Identity::generate(&mut OsEntropy)?;
            store.save_identity(&identity).await?;
            identity
        }
    };
    let groups = store
        .group_device_keys(&keys)
        .await?
        .into_iter()
        .map(|d| (d.group, GroupDevice { kind: d.kind, key: d.key }))
        .collect();
    Ok((identity, groups))
}

impl Actor for IdentityVault {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        load_state(
            NAME,
            self,
            ctx,
            self.time.clone(),
            Rc::new(|act: &Self| Box::pin(load(act.store.clone(), act.keys.clone()))),
            Rc::new(|act: &mut Self, (identity, groups)| {
                act.identity = Some(identity);
                act.group_devices = groups;
            }),
            0,
        );
    }
}

impl Supervised for IdentityVault {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(actor = NAME, "restarting; reloading keys from storage");
        self.identity = None;
        self.group_devices.clear();
        // Handshakes in progress are lost; requesters retry.
        self.handshakes.clear();
        self.handshake_order.clear();
        // So are device offers: the user makes a new one.
        self.offers.clear();
    }
}

impl Handler<GetIdentity> for IdentityVault {
    type Result = Result<PublicIdentity>;

    fn handle(&mut self, _: GetIdentity, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || {
            let id = self.identity()?;
            Ok(PublicIdentity { account: id.account.public(), device: id.device.verify_key() })
        })
    }
}

impl Handler<SignEntry> for IdentityVault {
    type Result = Result<veil_crypto::envelope::SignedEntry>;

    fn handle(&mut self, msg: SignEntry, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || {
            let key = self.device_key(&msg.group, &msg.epoch)?;
            Ok(msg.pending.sign(&key)?)
        })
    }
}

/// Batches of at most this many messages (a conversation's pace, not a
/// flood) are sealed on the node's thread: a thread hand-off costs more than
/// signing them (~25 µs each). The group log stores them in the round that
/// sealed them for the same reason.
pub(crate) const SMALL_BATCH: usize = 4;

impl Handler<SealMessages> for IdentityVault {
    // Larger batches are sealed on a blocking thread with a copy of the
    // epoch's device key (wiped when dropped): the node's thread, which
    // every other actor shares, goes on meanwhile (a batch of 500 takes
    // ~12 ms to sign).
    type Result = ResponseFuture<Result<SealedMessages>>;

    fn handle(&mut self, msg: SealMessages, ctx: &mut Self::Context) -> Self::Result {
        let key = guarded(NAME, ctx, || self.device_key(&msg.group, &msg.epoch));
        if msg.payloads.len() <= SMALL_BATCH {
            let sealed = guarded(NAME, ctx, || seal_messages(&key?, msg));
            return Box::pin(async move { sealed });
        }
        Box::pin(async move {
            let key = key?;
            tokio::task::spawn_blocking(move || seal_messages(&key, msg))
                .await
                .map_err(|_| Error::Runtime("a sealing thread failed".into()))?
        })
    }
}

/// Seals `msg`'s payloads in order with `key`, each naming the previous.
fn seal_messages(key: &SigningSecret, msg: SealMessages) -> Result<SealedMessages> {
    let SealMessages { keys, mut chain, parents, lamport, payloads, .. } = msg;
    let author = key.verify_key();
    let mut entries: Vec<(SealedEntry, Position)> = Vec::with_capacity(payloads.len());
    for (i, payload) in payloads.iter().enumerate() {
        let parents = match entries.last() {
            Some((previous, _)) => vec![previous.hash()],
            None => parents.clone(),
        };
        let position = Position { kind: EntryKind::Message, lamport: lamport + 1 + i as u64, parents };
        let pending =
            begin_entry(&keys, &author, &position, BodyKey::Message(&mut chain), payload, &mut ThreadEntropy)?;
        let sealed = pending.sign(key)?.finish(&keys, &mut ThreadEntropy)?;
        entries.push((sealed, position));
    }
    Ok(SealedMessages { author, entries, chain, payloads })
}

impl Handler<GetDeviceKey> for IdentityVault {
    type Result = Result<VerifyKey>;

    fn handle(&mut self, msg: GetDeviceKey, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || Ok(self.device_key(&msg.group, &msg.epoch)?.verify_key()))
    }
}

impl Handler<GetMemberKeys> for IdentityVault {
    type Result = Result<veil_crypto::MemberPublic>;

    fn handle(&mut self, msg: GetMemberKeys, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || Ok(self.member_keys(&msg.group)?.public()))
    }
}

impl Handler<AddGroup> for IdentityVault {
    // One at a time: a group added twice keeps the device key stored first.
    type Result = AtomicResponse<Self, Result<GroupId>>;

    fn handle(&mut self, msg: AddGroup, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let device = SigningSecret::generate(&mut OsEntropy)?;
                let AddGroup { kind, name, secret, epochs } = msg;
                let group = match kind {
                    GroupKind::Contact => store.insert_group(kind, name.as_deref(), &secret, &device).await?,
                    GroupKind::MultiMember => store.join_group(name.as_deref(), &secret, &device, &epochs).await?,
                };
                Ok::<_, Error>((group, GroupDevice { kind, key: device }))
            }
            .into_actor(self)
            .guarded_map(NAME, |added, act, _| {
                let (group, device) = added?;
                // Kept if the group was there already: the store kept its key.
                act.group_devices.entry(group).or_insert(device);
                Ok(group)
            }),
        ))
    }
}

impl Handler<GroupRemoved> for IdentityVault {
    type Result = ();

    fn handle(&mut self, msg: GroupRemoved, _: &mut Self::Context) {
        // Dropping the key zeroizes it.
        self.group_devices.remove(&msg.group);
    }
}

impl Handler<RotateNetworkKey> for IdentityVault {
    type Result = Result<NetworkKey>;

    fn handle(&mut self, _: RotateNetworkKey, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || Ok(NetworkKey::generate(&mut OsEntropy)?))
    }
}

impl Handler<BeginRequest> for IdentityVault {
    type Result = Result<(HandshakeId, Vec<u8>)>;

    fn handle(&mut self, msg: BeginRequest, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || {
            let (requester, message) = Requester::start(&self.identity()?.account, &msg.responder, &msg.request)?;
            Ok((self.keep_handshake(Pending::Requester(Box::new(requester))), message))
        })
    }
}

impl Handler<ContinueRequest> for IdentityVault {
    type Result = Result<Vec<u8>>;

    fn handle(&mut self, msg: ContinueRequest, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || match self.take_handshake(msg.handshake) {
            Some(Pending::Requester(r)) => Ok(r.read_response(&msg.response)?.1),
            _ => Err(no_handshake()),
        })
    }
}

impl Handler<AnswerRequest> for IdentityVault {
    type Result = Result<(HandshakeId, Vec<u8>)>;

    fn handle(&mut self, msg: AnswerRequest, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || {
            let (responder, message) = Responder::respond(&self.identity()?.account, &msg.message)?;
            Ok((self.keep_handshake(Pending::Responder(Box::new(responder))), message))
        })
    }
}

impl Handler<ReadRequest> for IdentityVault {
    type Result = Result<ReceivedRequest>;

    fn handle(&mut self, msg: ReadRequest, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || match self.take_handshake(msg.handshake) {
            Some(Pending::Responder(r)) => {
                let incoming = r.read_request(&msg.message)?;
                Ok(ReceivedRequest { requester: incoming.requester, payload: incoming.request })
            }
            _ => Err(no_handshake()),
        })
    }
}

impl Handler<DeriveContactGroup> for IdentityVault {
    type Result = Result<GroupSecret>;

    fn handle(&mut self, msg: DeriveContactGroup, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || Ok(contact_group_secret(&self.identity()?.account, &msg.peer)?))
    }
}

impl Handler<AnnounceDevice> for IdentityVault {
    type Result = Result<MemberJoined>;

    fn handle(&mut self, msg: AnnounceDevice, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || {
            let member = self.member_keys(&msg.group)?;
            let device = self.device_key(&msg.group, &msg.epoch)?.verify_key();
            // The account's other devices read this one too: the chain is
            // shared with the announcing member itself as well (they all
            // derive its keys).
            let own = member.public();
            let chain_shares = msg
                .recipients
                .iter()
                .filter(|r| **r != own)
                .chain(std::iter::once(&own))
                .map(|r: &MemberPublic| {
                    Ok(ChainShare {
                        recipient: r.signing,
                        sealed_state: seal_chain_state(&msg.group, &device, &msg.chain, &r.agreement, &mut OsEntropy)?,
                    })
                })
                .collect::<Result<_>>()?;
            Ok(MemberJoined {
                member: member.public(),
                device,
                device_cert: member.certify_device(&msg.group, &device),
                chain_shares,
                epoch: msg.epoch,
                display_name: msg.display_name,
            })
        })
    }
}

impl Handler<IssueInvitation> for IdentityVault {
    type Result = Result<veil_crypto::GroupInvitation>;

    fn handle(&mut self, msg: IssueInvitation, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || {
            let member = self.member_keys(&msg.group)?;
            Ok(veil_crypto::GroupInvitation::issue(&msg.secret, msg.name, msg.expires_at, msg.epochs, &member)?)
        })
    }
}

impl Handler<OpenChainShare> for IdentityVault {
    type Result = Result<(VerifyKey, ChainState)>;

    fn handle(&mut self, msg: OpenChainShare, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || {
            let member = self.member_keys(&msg.group)?;
            Ok(open_chain_state(&msg.group, &member.agreement, &msg.sealed)?)
        })
    }
}

impl Handler<OpenEpochShare> for IdentityVault {
    type Result = Result<EpochSecret>;

    fn handle(&mut self, msg: OpenEpochShare, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || match &msg.share {
            SealedEpochShare::Member(sealed) => {
                let member = self.member_keys(&msg.group)?;
                Ok(open_epoch_secret(&msg.group, &member.agreement, sealed)?)
            }
            SealedEpochShare::Devices(sealed) => {
                let mine = device_agreement_key(&self.identity()?.device);
                sealed
                    .iter()
                    .find_map(|s| open_device_epoch_secret(&msg.group, &mine, s).ok())
                    .ok_or(Error::Refused("no share of the new epoch opens for this device"))
            }
        })
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for IdentityVault {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || panic!("injected fault"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use veil_crypto::{
        GroupKeys, ReceiverChain, SenderChain,
        envelope::{EntryHash, open_entry},
        ratchet::DEFAULT_WINDOW,
    };

    use super::*;

    #[test]
    fn a_batch_is_sealed_as_one_chain_of_entries() {
        let key = SigningSecret::generate(&mut OsEntropy).unwrap();
        let keys = GroupKeys::derive(&GroupSecret::from_bytes([5; 32]));
        let chain = SenderChain::generate(&mut OsEntropy).unwrap();
        let mut receiver = ReceiverChain::new(chain.state().clone(), DEFAULT_WINDOW).unwrap();
        let head = EntryHash([7; 32]);
        let msg = SealMessages {
            group: GroupId([1; 32]),
            epoch: EpochId::ROOT,
            keys: keys.clone(),
            chain,
            parents: vec![head],
            lamport: 10,
            payloads: vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()],
        };
        let sealed = seal_messages(&key, msg).unwrap();
        assert_eq!(sealed.author, key.verify_key());
        assert_eq!(sealed.payloads.len(), 3, "handed back");
        let mut parent = head;
        for (i, (entry, position)) in sealed.entries.iter().enumerate() {
            assert_eq!(position.parents, vec![parent], "each names the one before");
            assert_eq!(position.lamport, 11 + i as u64);
            let opened = open_entry(&keys, entry).unwrap();
            assert_eq!(opened.author, key.verify_key());
            assert_eq!(opened.read_message(&mut receiver).unwrap()[..], sealed.payloads[i][..]);
            parent = entry.hash();
        }
        assert_eq!(sealed.chain.state(), receiver.state(), "the chain moved past all three");
    }
}
