//! The facade's device linking: offering this account to a new device,
//! joining an account from a new one, and the account's devices.

use std::time::Duration;

use veil_crypto::{
    VerifyKey,
    device_link::{DeviceOffer, ShortCode},
};
use veil_proto::account::AccountEvent;
use veil_storage::DeviceRecord;

use super::Node;
use crate::{
    DeviceJoin, Error, NodeEvent, Result,
    account_sync::TellNow,
    messages::{
        device::{CancelOffer, ConfirmDevice, LinkDevice, OfferId},
        group::RenewEpoch,
    },
    supervision::mailbox,
};

impl Node {
    /// Offers this account to a new device for `lifetime` (at most
    /// [`MAX_OFFER_LIFETIME`](crate::MAX_OFFER_LIFETIME)): the offer is
    /// announced at its own rendezvous point; show it (as
    /// `veil_proto::link::device_offer_uri` or `device_offer_qr`) to the
    /// new device. When a device answers, [`NodeEvent::DeviceLinkCode`]
    /// gives the code to compare; [`confirm_device`](Self::confirm_device)
    /// it, and [`NodeEvent::DeviceLinked`] follows once the new device
    /// holds the account.
    ///
    /// [`NodeEvent::DeviceLinkCode`]: crate::NodeEvent::DeviceLinkCode
    /// [`NodeEvent::DeviceLinked`]: crate::NodeEvent::DeviceLinked
    ///
    /// The account's devices keep each other in step through the account's
    /// own group (contacts, the link, groups; `account_sync`), which the
    /// first link creates.
    pub async fn link_device(&self, lifetime: Duration) -> Result<(OfferId, DeviceOffer)> {
        let inner = &self.inner;
        let (store, vault, courier) = (inner.store.clone(), inner.vault.clone(), inner.courier.clone());
        self.on_node(async move {
            crate::account_sync::ensure(&store, &vault.clone().recipient(), &vault.recipient(), &courier.recipient())
                .await
        })
        .await??;
        self.inner.linker.send(LinkDevice { lifetime }).await.map_err(mailbox("device-linker"))?
    }

    /// The user typed `code`, read off the new device's screen. If it is
    /// the code of the session this side holds, the new device receives
    /// the account; otherwise the offer is withdrawn (someone else
    /// answered it) and this fails with `Error::Refused`.
    pub async fn confirm_device(&self, offer: OfferId, code: ShortCode) -> Result<()> {
        self.inner.linker.send(ConfirmDevice { offer, code }).await.map_err(mailbox("device-linker"))?
    }

    /// Withdraws an offer: it is answered no more.
    pub async fn cancel_device_offer(&self, offer: OfferId) -> Result<()> {
        self.inner.linker.send(CancelOffer(offer)).await.map_err(mailbox("device-linker"))
    }

    /// From a new device: finds the first device of `offer` and runs the
    /// handshake. Show [`DeviceJoin::code`] and, once the user says the
    /// first device shows the same, [`DeviceJoin::complete`] makes a store
    /// of the account for this device. This node is only the vehicle (its
    /// network and schedule): the account's store is a new one.
    pub async fn join_device(&self, offer: &DeviceOffer) -> Result<DeviceJoin> {
        let inner = &self.inner;
        crate::device_link::join(
            inner.network.clone(),
            inner.rotator.clone().recipient(),
            inner.clock.clone(),
            inner.time.clone(),
            offer.clone(),
        )
        .await
    }

    /// Removes another device of this account: the account's other devices
    /// learn it (through the account's group, where the removed device
    /// learns it too), and every group this device is in, 1:1s and the
    /// account's group included, moves to a new epoch whose secret goes to
    /// the other members and to this account's remaining devices only
    /// (PROTOCOL.md §6.6). The removed device reads nothing written there
    /// afterwards. It keeps the account's keys, though: until the account
    /// key is rotated it can still act as the account (THREATS.md).
    /// Returns how many groups moved to a new epoch.
    pub async fn remove_device(&self, device: &VerifyKey) -> Result<usize> {
        let inner = &self.inner;
        let (store, sync, device) = (inner.store.clone(), inner.account_sync.clone(), *device);
        let remaining = self
            .on_node(async move {
                let listed = store.devices().await?;
                if listed.iter().any(|d| d.is_this_device && d.removed_at.is_some()) {
                    return Err(Error::Refused("this device was removed from its account"));
                }
                match listed.iter().find(|d| d.device == device) {
                    None => return Err(Error::Refused("no such device of this account")),
                    Some(d) if d.is_this_device => return Err(Error::Refused("a device cannot remove itself")),
                    Some(d) if d.removed_at.is_some() => return Err(Error::Refused("that device was removed already")),
                    Some(_) => {}
                }
                // Told first, in the epoch the removed device still reads:
                // it learns it was removed.
                sync.send(TellNow(AccountEvent::DeviceRemoved { device })).await.map_err(mailbox("account-sync"))??;
                let remaining = crate::group_log::remaining_devices(&store).await?;
                let others = remaining.into_iter().filter(|(d, _)| *d != device).map(|(_, agreement)| agreement);
                Ok::<Vec<_>, Error>(others.collect())
            })
            .await??;
        let groups = {
            let store = inner.store.clone();
            self.on_node(async move { store.groups().await }).await??
        };
        let mut renewed = 0;
        for group in groups {
            // A group whose log does not run (a request never answered) has nobody to hide from.
            let log = match inner.group(&group.id).await {
                Ok(log) => log,
                Err(Error::UnknownGroup) => continue,
                Err(e) => return Err(e),
            };
            match log.send(RenewEpoch { devices: remaining.clone() }).await.map_err(mailbox("group-log"))? {
                Ok(()) => renewed += 1,
                // A group this account left or was removed from: nothing to renew.
                Err(Error::Refused(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // Marked last: if this stops half way, removing it again renews
        // every group again (a renewal too many costs nothing).
        let store = inner.store.clone();
        self.on_node(async move { store.remove_device(&device).await }).await??;
        let _ = inner.events.send(NodeEvent::DeviceRemoved { device, this_device: false, synced: false });
        Ok(renewed)
    }

    /// This account's devices known here, oldest first: this one, and those
    /// it linked.
    pub async fn devices(&self) -> Result<Vec<DeviceRecord>> {
        let store = self.inner.store.clone();
        Ok(self.on_node(async move { store.devices().await }).await??)
    }
}
