//! Changes another device of this account made, done here too (the
//! account's sync hands them over): the same store changes as the user's
//! own, reported with `synced: true` so they are not sent back.

use veil_proto::account::ContactChangeKind;

use super::*;
use crate::messages::contacts::{AdoptLink, ApplyContact};

impl Handler<ApplyContact> for ContactBook {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, msg: ApplyContact, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(async move { apply_contact(&deps, msg).await }.into_actor(self))
    }
}

async fn apply_contact(deps: &ContactBookDeps, msg: ApplyContact) -> Result<()> {
    let ApplyContact { account, change, display_name } = msg;
    let now = deps.store.contact(&account.signing).await?.map(|c| c.state);
    let name = display_name.as_deref();
    match change {
        ContactChangeKind::Accepted if now != Some(ContactState::Accepted) => {
            deps.store.upsert_contact(&account, name, None, ContactState::Accepted).await?;
            let group = open_contact_group(deps, &account, ContactState::Accepted).await?;
            let _ = deps.events.send(NodeEvent::ContactAccepted { account: account.signing, group: Some(group) });
            changed(deps, account, Some(ContactState::Accepted), true);
        }
        ContactChangeKind::Discarded if now.is_some() && now != Some(ContactState::Discarded) => {
            deps.store.set_contact_state(&account.signing, ContactState::Discarded, None).await?;
            changed(deps, account, Some(ContactState::Discarded), true);
        }
        ContactChangeKind::Blocked if now != Some(ContactState::Blocked) => {
            // Known or not: its requests are refused here too from now on.
            deps.store.upsert_contact(&account, name, None, ContactState::Blocked).await?;
            changed(deps, account, Some(ContactState::Blocked), true);
        }
        ContactChangeKind::Removed if now.is_some() => {
            remove(deps, &account.signing, true).await?;
        }
        _ => {}
    }
    Ok(())
}

impl Handler<AdoptLink> for ContactBook {
    type Result = ResponseActFuture<Self, Result<LinkInfo>>;

    fn handle(&mut self, msg: AdoptLink, ctx: &mut Self::Context) -> Self::Result {
        self.run(LinkChange::Adopt { seed: msg.seed, enabled: msg.enabled, limits: msg.limits }, ctx)
    }
}
