//! What goes over the air before a connection: this node's advertising
//! token (`veil_crypto::advert`) under veil's service UUID, and the tokens
//! of the veil nodes in range, through BlueZ.
//!
//! An advertisement carries nothing but the token: no name, no peer id, no
//! other service. BlueZ gives the controller a random device address.

use std::collections::HashSet;

use bluer::{AdapterEvent, DiscoveryFilter, DiscoveryTransport, Uuid, adv::Advertisement};
use futures::{Stream, StreamExt};
use veil_crypto::advert::AdvertToken;

use crate::{
    l2cap::{BleAddr, PSM},
    radio::{Radio, Unavailable, unavailable},
};

/// veil's BLE service: an advertisement's token is its service data.
pub const SERVICE: Uuid = Uuid::from_u128(0x6d1c_2a4e_93f0_4b7e_8a55_0c3e_9b21_f7d4);

/// A veil advertisement seen in range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// Where to connect to the advertiser: its device address (random,
    /// changing) on veil's channel.
    pub at: BleAddr,
    /// Its token.
    pub token: AdvertToken,
}

/// This node's advertisement; withdrawn when dropped.
pub struct Advertising {
    _handle: bluer::adv::AdvertisementHandle,
}

impl std::fmt::Debug for Advertising {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Advertising")
    }
}

impl Radio {
    /// The adapter named `name`, else the default one.
    async fn adapter_named(&self, name: Option<&str>) -> Result<bluer::Adapter, Unavailable> {
        match name {
            Some(name) => self.session.adapter(name).map_err(|e| unavailable(&e)),
            None => self.session.default_adapter().await.map_err(|e| unavailable(&e)),
        }
    }

    /// Advertises `token` (and nothing else) on the adapter `name` (else
    /// the default one) until the returned value is dropped.
    pub async fn advertise(&self, name: Option<&str>, token: &AdvertToken) -> Result<Advertising, Unavailable> {
        let adapter = self.adapter_named(name).await?;
        let advertisement =
            Advertisement { service_data: [(SERVICE, token.to_bytes().to_vec())].into(), ..Advertisement::default() };
        let handle = adapter.advertise(advertisement).await.map_err(|e| unavailable(&e))?;
        Ok(Advertising { _handle: handle })
    }

    /// Waits (at most `limit`) until the adapter `name` (else the default
    /// one) no longer discovers: BlueZ stops a discovery some time after
    /// its scan is dropped, and the kernel starts an LE connection only
    /// once the adapter's discovery ended. `false` if it still discovers.
    pub async fn scan_stopped(&self, name: Option<&str>, limit: std::time::Duration) -> Result<bool, Unavailable> {
        let adapter = self.adapter_named(name).await?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if !adapter.is_discovering().await.map_err(|e| unavailable(&e))? {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(DISCOVERY_POLL).await;
        }
    }

    /// The veil advertisements in range of the adapter `name` (else the
    /// default one), each time one is seen with a token not seen before.
    /// Service data that is not a token is ignored.
    pub async fn scan(&self, name: Option<&str>) -> Result<impl Stream<Item = Sighting> + use<>, Unavailable> {
        let adapter = self.adapter_named(name).await?;
        // No UUID filter: BlueZ matches it against the advertised service
        // lists, and a token travels as service data only (room for both
        // there is not); other devices are told apart below.
        let filter =
            DiscoveryFilter { transport: DiscoveryTransport::Le, duplicate_data: true, ..DiscoveryFilter::default() };
        adapter.set_discovery_filter(filter).await.map_err(|e| unavailable(&e))?;
        let events = adapter.discover_devices_with_changes().await.map_err(|e| unavailable(&e))?;
        // Bounded: a neighbour cycling tokens fills it, and it starts over.
        let mut seen: HashSet<AdvertToken> = HashSet::new();
        Ok(events
            .filter_map(move |event| {
                let adapter = adapter.clone();
                async move {
                    let AdapterEvent::DeviceAdded(address) = event else { return None };
                    let device = adapter.device(address).ok()?;
                    let data = device.service_data().await.ok()??;
                    let token = AdvertToken::parse(data.get(&SERVICE)?).ok()?;
                    let random = device.address_type().await.ok()? == bluer::AddressType::LeRandom;
                    Some(Sighting { at: BleAddr { device: address.0, random, psm: PSM }, token })
                }
            })
            .filter(move |sighting| {
                if seen.len() >= MAX_SEEN {
                    seen.clear();
                }
                futures::future::ready(seen.insert(sighting.token))
            }))
    }
}

/// How often `scan_stopped` asks BlueZ (it sends no change for this).
const DISCOVERY_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Most tokens a scan remembers, to report each once.
const MAX_SEEN: usize = 4096;
