//! The `ContactBook`: this account's contact link (share, enable, disable,
//! reset) and, in later work, contact requests and their states. Its state
//! lives in storage.

use std::sync::Arc;

use actix::{Actor, ActorFutureExt, Context, Handler, Recipient, ResponseActFuture, Supervised, WrapFuture};
use veil_crypto::{ContactLink, OsEntropy, RendezvousSeed};
use veil_proto::link;
use veil_storage::Store;

use crate::{
    Error, Result,
    messages::{
        contacts::{LinkInfo, ResetLink, SetLinkEnabled, ShareLink},
        rendezvous::Refresh,
        vault::{GetIdentity, PublicIdentity},
    },
    supervision::mailbox,
};

const NAME: &str = "contact-book";

/// Manages the contact link (and, later, contact requests).
pub struct ContactBook {
    store: Arc<Store>,
    identity: Recipient<GetIdentity>,
    rotator: Recipient<Refresh>,
}

impl core::fmt::Debug for ContactBook {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ContactBook").finish_non_exhaustive()
    }
}

impl ContactBook {
    /// A contact book over `store`, asking the vault for the public identity
    /// and telling the rotator when the link changes.
    pub fn new(store: Arc<Store>, identity: Recipient<GetIdentity>, rotator: Recipient<Refresh>) -> Self {
        Self { store, identity, rotator }
    }
}

impl Actor for ContactBook {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
    }
}

impl Supervised for ContactBook {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(actor = NAME, "restarting (its state is in storage)");
    }
}

/// What a link operation changes.
#[derive(Clone, Copy)]
enum Change {
    /// Nothing (just read it, creating it on first use).
    None,
    Reset,
    Enable(bool),
}

async fn apply(
    store: Arc<Store>,
    identity: Recipient<GetIdentity>,
    rotator: Recipient<Refresh>,
    change: Change,
) -> Result<LinkInfo> {
    let PublicIdentity { account, .. } = identity.send(GetIdentity).await.map_err(mailbox("identity-vault"))??;
    // The first use creates the link; a reset replaces its seed.
    let new_seed = matches!(change, Change::Reset) || store.link().await?.is_none();
    if new_seed {
        store.reset_link(&RendezvousSeed::generate(&mut OsEntropy)?).await?;
    }
    if let Change::Enable(on) = change {
        store.set_link_enabled(on).await?;
    }
    let state = store.link().await?.ok_or(Error::Storage(veil_storage::Error::Unknown("contact link")))?;
    if new_seed || matches!(change, Change::Enable(_)) {
        rotator.send(Refresh).await.map_err(mailbox("rendezvous-rotator"))??;
    }
    let value = ContactLink { account, seed: state.seed, display_name: None };
    Ok(LinkInfo { uri: link::contact_uri(&value), qr: link::contact_qr(&value), enabled: state.enabled })
}

impl ContactBook {
    fn run(&mut self, change: Change) -> ResponseActFuture<Self, Result<LinkInfo>> {
        let fut = apply(self.store.clone(), self.identity.clone(), self.rotator.clone(), change);
        Box::pin(fut.into_actor(self).map(|r, _, _| r))
    }
}

impl Handler<ShareLink> for ContactBook {
    type Result = ResponseActFuture<Self, Result<LinkInfo>>;

    fn handle(&mut self, _: ShareLink, _: &mut Self::Context) -> Self::Result {
        self.run(Change::None)
    }
}

impl Handler<ResetLink> for ContactBook {
    type Result = ResponseActFuture<Self, Result<LinkInfo>>;

    fn handle(&mut self, _: ResetLink, _: &mut Self::Context) -> Self::Result {
        self.run(Change::Reset)
    }
}

impl Handler<SetLinkEnabled> for ContactBook {
    type Result = ResponseActFuture<Self, Result<LinkInfo>>;

    fn handle(&mut self, msg: SetLinkEnabled, _: &mut Self::Context) -> Self::Result {
        self.run(Change::Enable(msg.0))
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for ContactBook {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        crate::supervision::guarded(NAME, ctx, || panic!("injected fault"))
    }
}
