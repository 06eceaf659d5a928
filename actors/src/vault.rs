//! The `IdentityVault`: the only actor that holds private keys. It loads the
//! identity from storage (creating one, offline, on first run) and answers
//! with public keys and signatures; keys never leave it, except each
//! period's fresh network key, which the network layer needs.

use std::{collections::HashMap, sync::Arc};

use actix::{Actor, ActorFutureExt, Context, Handler, ResponseActFuture, Supervised, WrapFuture};
use veil_crypto::{GroupId, Identity, NetworkKey, OsEntropy, Signature, SigningSecret, VerifyKey};
use veil_storage::Store;

use crate::{
    Error, Result,
    messages::vault::{
        GetDeviceKey, GetIdentity, GetMemberKeys, GroupAdded, PublicIdentity, RotateNetworkKey, SignAsDevice,
    },
    supervision::{guarded, load_state},
};
use std::rc::Rc;

const NAME: &str = "identity-vault";

/// Holds every private key of the node.
pub struct IdentityVault {
    store: Arc<Store>,
    identity: Option<Identity>,
    group_devices: HashMap<GroupId, SigningSecret>,
}

impl core::fmt::Debug for IdentityVault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IdentityVault").field("loaded", &self.identity.is_some()).finish_non_exhaustive()
    }
}

impl IdentityVault {
    /// A vault over `store`; it loads its keys when started.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store, identity: None, group_devices: HashMap::new() }
    }

    fn identity(&self) -> Result<&Identity> {
        self.identity.as_ref().ok_or(Error::Unavailable(NAME))
    }
}

/// Loads (or, on first run, creates and saves) the identity and every
/// group's device key.
async fn load(store: Arc<Store>) -> Result<(Identity, HashMap<GroupId, SigningSecret>)> {
    let identity = match store.load_identity().await? {
        Some(identity) => identity,
        None => {
            let identity = Identity::generate(&mut OsEntropy)?;
            store.save_identity(&identity).await?;
            identity
        }
    };
    let groups = store.groups().await?.into_iter().map(|g| (g.id, g.device)).collect();
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
            Rc::new(|act: &Self| Box::pin(load(act.store.clone()))),
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

impl Handler<SignAsDevice> for IdentityVault {
    type Result = Result<Signature>;

    fn handle(&mut self, msg: SignAsDevice, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || {
            let key = self.group_devices.get(&msg.group).ok_or(Error::UnknownGroup)?;
            Ok(key.sign(&msg.message))
        })
    }
}

impl Handler<GetDeviceKey> for IdentityVault {
    type Result = Result<VerifyKey>;

    fn handle(&mut self, msg: GetDeviceKey, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || Ok(self.group_devices.get(&msg.group).ok_or(Error::UnknownGroup)?.verify_key()))
    }
}

impl Handler<GetMemberKeys> for IdentityVault {
    type Result = Result<veil_crypto::MemberPublic>;

    fn handle(&mut self, msg: GetMemberKeys, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || Ok(self.identity()?.alias.member_keys(&msg.group).public()))
    }
}

impl Handler<GroupAdded> for IdentityVault {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, msg: GroupAdded, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { store.group(&msg.group).await }.into_actor(self).map(|found, act, _| {
            let group = found?.ok_or(Error::UnknownGroup)?;
            act.group_devices.insert(group.id, group.device);
            Ok(())
        }))
    }
}

impl Handler<RotateNetworkKey> for IdentityVault {
    type Result = Result<NetworkKey>;

    fn handle(&mut self, _: RotateNetworkKey, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || Ok(NetworkKey::generate(&mut OsEntropy)?))
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for IdentityVault {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || panic!("injected fault"))
    }
}
