//! The device-linking calls: an offer's stream of events, confirming a
//! code, and the account's devices.

use std::{pin::Pin, time::Duration};

use futures::{Stream, StreamExt};
use tokio::sync::{broadcast, watch};
use tonic::Status;
use veil_actors::{
    MAX_OFFER_LIFETIME, Node, NodeEvent,
    crypto::device_link::{DEFAULT_OFFER_LIFETIME, ShortCode},
    messages::device::OfferId,
    proto::link,
    storage::DeviceRecord,
};

use super::convert::node_error;
use crate::api::{self, device_link_event::Kind};

pub(super) type DeviceLinkStream = Pin<Box<dyn Stream<Item = Result<api::DeviceLinkEvent, Status>> + Send>>;

/// Withdraws the offer when the stream is dropped before it ended (the
/// client went away).
struct Withdraw {
    node: Node,
    offer: OfferId,
    ended: bool,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if !self.ended {
            let (node, offer) = (self.node.clone(), self.offer);
            tokio::spawn(async move {
                let _ = node.cancel_device_offer(offer).await;
            });
        }
    }
}

/// Makes an offer and streams what happens to it.
pub(super) async fn link_device(
    node: &Node,
    r: api::LinkDeviceRequest,
    stop: watch::Receiver<bool>,
) -> Result<DeviceLinkStream, Status> {
    let lifetime = match r.lifetime_seconds {
        0 => Duration::from_secs(DEFAULT_OFFER_LIFETIME),
        s => Duration::from_secs(u64::from(s)),
    };
    if lifetime > MAX_OFFER_LIFETIME {
        return Err(Status::invalid_argument("an offer is answered for an hour at most"));
    }
    // Subscribed before the offer exists: no code can be missed.
    let events = node.events();
    let (offer, shown) = node.link_device(lifetime).await.map_err(node_error)?;
    let first = api::DeviceLinkEvent {
        kind: Some(Kind::Offer(api::DeviceOffer {
            offer: offer.0,
            uri: link::device_offer_uri(&shown).to_string(),
            qr: link::device_offer_qr(&shown).to_string(),
            expires_at: shown.expires_at.0,
        })),
    };
    let guard = Withdraw { node: node.clone(), offer, ended: false };
    let rest = futures::stream::unfold((events, stop, guard), move |(mut events, mut stop, mut guard)| async move {
        if guard.ended {
            return None;
        }
        loop {
            let next = tokio::select! {
                e = events.recv() => e,
                _ = stop.wait_for(|s| *s) => return None,
            };
            let kind = match next {
                Ok(NodeEvent::DeviceLinkCode { offer: o, code }) if o == offer => {
                    Kind::Code(api::DeviceCode { offer: offer.0, code: code.to_string() })
                }
                Ok(NodeEvent::DeviceLinked { offer: o, device }) if o == offer => {
                    guard.ended = true;
                    Kind::Linked(hex::encode(device.to_bytes()))
                }
                Ok(NodeEvent::DeviceOfferClosed { offer: o, reason }) if o == offer => {
                    guard.ended = true;
                    Kind::Closed(reason.to_owned())
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            return Some((Ok(api::DeviceLinkEvent { kind: Some(kind) }), (events, stop, guard)));
        }
    });
    Ok(Box::pin(futures::stream::once(async move { Ok(first) }).chain(rest)))
}

/// Confirms the code the user typed.
pub(super) async fn confirm_device(node: &Node, r: api::ConfirmDeviceRequest) -> Result<(), Status> {
    let code: ShortCode = r.code.parse().map_err(|_| Status::invalid_argument("a code is six digits"))?;
    node.confirm_device(OfferId(r.offer), code).await.map_err(node_error)
}

/// The account's devices.
pub(super) async fn list_devices(node: &Node) -> Result<api::ListDevicesResponse, Status> {
    let devices = node.devices().await.map_err(node_error)?;
    Ok(api::ListDevicesResponse { devices: devices.iter().map(device).collect() })
}

fn device(d: &DeviceRecord) -> api::Device {
    api::Device {
        device: hex::encode(d.device.to_bytes()),
        this_device: d.is_this_device,
        added_at: d.added_at.0,
        name: d.name.clone().unwrap_or_default(),
        removed_at: d.removed_at.map_or(0, |t| t.0),
    }
}

/// Removes the device whose key `r.device` is, or begins with.
pub(super) async fn remove_device(
    node: &Node,
    r: api::RemoveDeviceRequest,
) -> Result<api::RemoveDeviceResponse, Status> {
    let wanted = r.device.trim().to_ascii_lowercase();
    if wanted.len() < 4 || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Status::invalid_argument("name a device by its key in hex (at least 4 digits)"));
    }
    let devices = node.devices().await.map_err(node_error)?;
    let mut matching = devices.iter().filter(|d| hex::encode(d.device.to_bytes()).starts_with(&wanted));
    let found = match (matching.next(), matching.next()) {
        (Some(d), None) => d.device,
        (None, _) => return Err(Status::not_found("no device of this account has that key")),
        (Some(_), Some(_)) => return Err(Status::invalid_argument("more than one device has a key beginning so")),
    };
    let renewed = node.remove_device(&found).await.map_err(node_error)?;
    Ok(api::RemoveDeviceResponse {
        device: hex::encode(found.to_bytes()),
        groups_renewed: u32::try_from(renewed).unwrap_or(u32::MAX),
    })
}
