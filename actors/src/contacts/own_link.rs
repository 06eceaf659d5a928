//! This account's contact link: shared, reset (old links stop working),
//! enabled or disabled, with expiry and use limits.

use super::*;

/// The link seed, drawn on first use.
pub(super) async fn ensure_link(store: &Store) -> Result<RendezvousSeed> {
    if let Some(link) = store.link().await? {
        return Ok(link.seed);
    }
    store.reset_link(&RendezvousSeed::generate(&mut OsEntropy)?).await?;
    Ok(store.link().await?.ok_or(Error::Storage(veil_storage::Error::Unknown("contact link")))?.seed)
}

/// What a link operation changes.
#[derive(Clone)]
pub(super) enum LinkChange {
    /// Nothing (just read it, creating it on first use).
    None,
    Reset(LinkLimits),
    Enable(bool),
    /// What another device of this account has: its seed, state and limits.
    Adopt {
        seed: RendezvousSeed,
        enabled: bool,
        limits: LinkLimits,
    },
}

impl LinkChange {
    /// Whether the link ends up disabled.
    pub(super) fn disables(&self) -> bool {
        matches!(self, Self::Enable(false) | Self::Adopt { enabled: false, .. })
    }
}

pub(super) async fn apply(deps: Arc<ContactBookDeps>, change: LinkChange) -> Result<LinkInfo> {
    let PublicIdentity { account, .. } =
        deps.vault.identity.send(GetIdentity).await.map_err(mailbox("identity-vault"))??;
    let before = deps.store.link().await?;
    let changes = !matches!(change, LinkChange::None);
    match &change {
        LinkChange::Reset(limits) => {
            deps.store.reset_link_with(&RendezvousSeed::generate(&mut OsEntropy)?, *limits).await?
        }
        LinkChange::Adopt { seed, limits, .. } if before.as_ref().is_none_or(|l| &l.seed != seed) => {
            deps.store.reset_link_with(seed, *limits).await?
        }
        _ => {
            ensure_link(&deps.store).await?;
        }
    }
    if let LinkChange::Enable(on) | LinkChange::Adopt { enabled: on, .. } = change {
        deps.store.set_link_enabled(on).await?;
    }
    let state = deps.store.link().await?.ok_or(Error::Storage(veil_storage::Error::Unknown("contact link")))?;
    if before.is_none() || changes {
        deps.rotator.send(Refresh).await.map_err(mailbox("rendezvous-rotator"))??;
    }
    let answers = state.answers_at(deps.clock.now());
    let (enabled, limits) = (state.enabled, state.limits);
    let value = ContactLink { account, seed: state.seed, display_name: None };
    Ok(LinkInfo { uri: link::contact_uri(&value), qr: link::contact_qr(&value), enabled, limits, answers })
}

impl Handler<ShareLink> for ContactBook {
    type Result = ResponseActFuture<Self, Result<LinkInfo>>;

    fn handle(&mut self, _: ShareLink, ctx: &mut Self::Context) -> Self::Result {
        self.run(LinkChange::None, ctx)
    }
}

impl Handler<ResetLink> for ContactBook {
    type Result = ResponseActFuture<Self, Result<LinkInfo>>;

    fn handle(&mut self, ResetLink(limits): ResetLink, ctx: &mut Self::Context) -> Self::Result {
        self.run(LinkChange::Reset(limits), ctx)
    }
}

impl Handler<SetLinkEnabled> for ContactBook {
    type Result = ResponseActFuture<Self, Result<LinkInfo>>;

    fn handle(&mut self, msg: SetLinkEnabled, ctx: &mut Self::Context) -> Self::Result {
        self.run(LinkChange::Enable(msg.0), ctx)
    }
}
