//! What goes over the air before a connection: this node's advertising
//! token (`veil_crypto::advert`) under veil's service UUID, and the tokens
//! of the veil nodes in range.
//!
//! [`Air`] is all the BLE actor needs from a radio: its state, advertising,
//! scanning, and the plug-in that carries connections. [`Bluez`] is the
//! real one (BlueZ through bluer, L2CAP channels); `crate::ether` an
//! in-process one for tests.
//!
//! An advertisement carries nothing but the token: no name, no peer id, no
//! other service. BlueZ gives the controller a random device address.

use std::{
    collections::HashSet,
    sync::{Arc, OnceLock},
    time::Duration,
};

use bluer::{AdapterEvent, DiscoveryFilter, DiscoveryTransport, Uuid, adv::Advertisement};
use futures::{Stream, StreamExt, future::BoxFuture, stream::BoxStream};
use veil_crypto::advert::AdvertToken;
use veil_transports::{TransportPlugin, libp2p::Multiaddr};

use crate::{
    addr::GATT,
    l2cap::{Ble, BleAddr, PSM},
    radio::{RECHECK, Radio, RadioState, Unavailable, unavailable},
};

/// A veil advertisement in range: its token and where to dial it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRange {
    /// Where to connect to the advertiser (an address of the plug-in [`Air::link`] gives).
    pub at: Multiaddr,
    /// The token it advertises: names nobody, but the lower of two tokens decides which side dials.
    pub token: AdvertToken,
}

/// Something that keeps an advertisement on the air until dropped.
pub type OnAir = Box<dyn Send + Sync>;

/// A radio, as the BLE actor drives it. Every method is cheap to call and
/// returns futures that own what they need.
pub trait Air: Send + Sync + 'static {
    /// The radio's state each time it may have changed, the state now
    /// first; never ends.
    fn states(&self) -> BoxStream<'static, RadioState>;
    /// Puts `token` (and nothing else) on the air until the returned value
    /// is dropped.
    fn advertise(&self, token: AdvertToken) -> BoxFuture<'static, Result<OnAir, Unavailable>>;
    /// The veil advertisements in range, each token once, until dropped.
    fn scan(&self) -> BoxFuture<'static, Result<BoxStream<'static, InRange>, Unavailable>>;
    /// Waits (at most `limit`) until a dropped scan really ended: radios
    /// connect only once they no longer discover. `false` if it still runs.
    fn scan_stopped(&self, limit: Duration) -> BoxFuture<'static, Result<bool, Unavailable>>;
    /// The transport plug-in that carries connections over the radio as
    /// `ready` describes it (its id is [`crate::l2cap::BLE`]), and where it
    /// listens (at least one address).
    fn link(&self, ready: &RadioState) -> (Arc<dyn TransportPlugin>, Vec<Multiaddr>);

    /// Where else to try a device a dial to `at` did not reach: none by
    /// default.
    fn fallback(&self, at: &Multiaddr) -> Option<Multiaddr> {
        let _ = at;
        None
    }
}

/// The real air: BlueZ through bluer, connections over L2CAP channels
/// (the [`Ble`] plug-in), on one adapter or the default one. It reaches
/// the system bus when first followed ([`Air::states`]), and tries again
/// every [`RECHECK`] while there is none: a machine without Bluetooth runs
/// normally and says why.
#[derive(Clone)]
pub struct Bluez {
    radio: Arc<OnceLock<Radio>>,
    adapter: Option<String>,
    gatt_only: bool,
}

impl std::fmt::Debug for Bluez {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bluez").field("adapter", &self.adapter).field("gatt_only", &self.gatt_only).finish()
    }
}

impl Bluez {
    /// The air of the adapter `adapter` (`hci1`), else of the default one.
    pub fn new(adapter: Option<String>) -> Self {
        Self { radio: Arc::default(), adapter, gatt_only: false }
    }

    /// Links over veil's GATT service only, for a controller that offers no
    /// L2CAP connection-oriented channels: it listens on the GATT service
    /// alone and dials what it sees over GATT.
    pub fn gatt_only(self) -> Self {
        Self { gatt_only: true, ..self }
    }

    fn radio(&self) -> Result<Radio, Unavailable> {
        self.radio.get().cloned().ok_or_else(|| Unavailable::NoBus("not reached yet".into()))
    }
}

impl Air for Bluez {
    fn states(&self) -> BoxStream<'static, RadioState> {
        let this = self.clone();
        futures::stream::unfold(false, move |again| {
            let this = this.clone();
            async move {
                if again {
                    tokio::time::sleep(RECHECK).await;
                }
                let radio = match this.radio.get() {
                    Some(radio) => Ok(radio.clone()),
                    None => Radio::connect().await.map(|radio| this.radio.get_or_init(|| radio).clone()),
                };
                // Once reached, the bus is followed for good; until then
                // each attempt says why BLE is unavailable.
                let states = match radio {
                    Ok(radio) => radio.changes(this.adapter.as_deref()).boxed(),
                    Err(why) => futures::stream::once(async { RadioState::Unavailable(why) }).boxed(),
                };
                Some((states, true))
            }
        })
        .flatten()
        .boxed()
    }

    fn advertise(&self, token: AdvertToken) -> BoxFuture<'static, Result<OnAir, Unavailable>> {
        let (radio, adapter) = (self.radio(), self.adapter.clone());
        Box::pin(async move {
            let on_air = radio?.advertise(adapter.as_deref(), &token).await?;
            Ok(Box::new(on_air) as OnAir)
        })
    }

    fn scan(&self) -> BoxFuture<'static, Result<BoxStream<'static, InRange>, Unavailable>> {
        let (radio, adapter, gatt_only) = (self.radio(), self.adapter.clone(), self.gatt_only);
        Box::pin(async move {
            let sightings = radio?.scan(adapter.as_deref()).await?;
            let psm = move |at: BleAddr| if gatt_only { BleAddr { psm: GATT, ..at } } else { at };
            Ok(sightings.map(move |s| InRange { at: psm(s.at).to_multiaddr(), token: s.token }).boxed())
        })
    }

    fn scan_stopped(&self, limit: Duration) -> BoxFuture<'static, Result<bool, Unavailable>> {
        let (radio, adapter) = (self.radio(), self.adapter.clone());
        Box::pin(async move { radio?.scan_stopped(adapter.as_deref(), limit).await })
    }

    /// On veil's L2CAP channel and its GATT service (the service only if
    /// [`Bluez::gatt_only`]), on every adapter unless one was named: then
    /// from and on its own address only, so nodes on two adapters of one
    /// machine each use their own.
    fn link(&self, ready: &RadioState) -> (Arc<dyn TransportPlugin>, Vec<Multiaddr>) {
        let own = match (&self.adapter, ready) {
            (Some(_), RadioState::Ready { address, .. }) => parse_device(address),
            _ => None,
        };
        let (plugin, at) = match own {
            Some(device) => (Ble::from_adapter(device), BleAddr { device, random: false, psm: PSM }),
            None => (Ble::ANY_ADAPTER, BleAddr::ANY),
        };
        let gatt = BleAddr { psm: GATT, ..at }.to_multiaddr();
        (Arc::new(plugin), if self.gatt_only { vec![gatt] } else { vec![at.to_multiaddr(), gatt] })
    }

    /// Over GATT, a device whose L2CAP channel could not be reached (its
    /// controller may offer no connection-oriented channels).
    fn fallback(&self, at: &Multiaddr) -> Option<Multiaddr> {
        BleAddr::parse(at).ok().filter(|a| a.psm != GATT).map(|a| BleAddr { psm: GATT, ..a }.to_multiaddr())
    }
}

/// `00:AA:01:01:00:01` as bytes.
fn parse_device(text: &str) -> Option<[u8; 6]> {
    let mut device = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut device {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(device)
}

/// veil's BLE service: an advertisement's token is its service data.
pub const SERVICE: Uuid = Uuid::from_u128(0x6d1c_2a4e_93f0_4b7e_8a55_0c3e_9b21_f7d4);

/// A veil advertisement seen in range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// Where to connect to the advertiser: its device address (random,
    /// changing) on veil's channel.
    pub at: BleAddr,
    /// The token it advertises: names nobody, but the lower of two tokens decides which side dials.
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
        forget_stale_advertisers(&adapter).await;
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

/// Makes BlueZ forget the veil advertisers it saw before (neither paired
/// nor connected), so a scan reports only those advertising now: BlueZ
/// reports every device it remembers as found when a discovery starts, and
/// a veil node's address changes with its advertisement (LE privacy), so a
/// remembered one is a dial to nobody, or, right after that node's radio
/// went away, onto a link the kernel is still tearing down. Other devices
/// (a user's headphones) are left alone.
async fn forget_stale_advertisers(adapter: &bluer::Adapter) {
    for address in adapter.device_addresses().await.unwrap_or_default() {
        let Ok(device) = adapter.device(address) else { continue };
        let veil = device.service_data().await.ok().flatten().is_some_and(|data| data.contains_key(&SERVICE));
        let held = device.is_paired().await.unwrap_or(true) || device.is_connected().await.unwrap_or(true);
        if veil && !held {
            let _ = adapter.remove_device(address).await;
        }
    }
}

/// How often `scan_stopped` asks BlueZ (it sends no change for this).
const DISCOVERY_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Most tokens a scan remembers, to report each once.
const MAX_SEEN: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_adapter_listens_on_its_own_address_else_on_every_one() {
        let ready = RadioState::Ready { adapter: "hci1".into(), address: "00:AA:01:01:00:01".into() };
        let own: Vec<String> = Bluez::new(Some("hci1".into())).link(&ready).1.iter().map(ToString::to_string).collect();
        assert_eq!(own, ["/unix/ble.00aa01010001.public.129", "/unix/ble.00aa01010001.public.gatt"]);
        let any = Bluez::new(None).link(&ready).1;
        assert_eq!(any, [BleAddr::ANY.to_multiaddr(), BleAddr { psm: GATT, ..BleAddr::ANY }.to_multiaddr()]);
        let gatt: Vec<String> =
            Bluez::new(Some("hci1".into())).gatt_only().link(&ready).1.iter().map(ToString::to_string).collect();
        assert_eq!(gatt, ["/unix/ble.00aa01010001.public.gatt"]);
        for bad in ["00:AA:01:01:00", "00:AA:01:01:00:01:02", "zz:AA:01:01:00:01", ""] {
            assert_eq!(parse_device(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_unreached_l2cap_channel_falls_back_to_gatt_and_gatt_to_nothing() {
        let air = Bluez::new(None);
        let l2cap: Multiaddr = "/unix/ble.c0ffee000001.random.129".parse().unwrap_or_else(|_| Multiaddr::empty());
        let gatt = air.fallback(&l2cap);
        assert_eq!(gatt.as_ref().map(ToString::to_string).as_deref(), Some("/unix/ble.c0ffee000001.random.gatt"));
        assert_eq!(gatt.and_then(|g| air.fallback(&g)), None);
        assert_eq!(air.fallback(&"/memory/1".parse().unwrap_or_else(|_| Multiaddr::empty())), None);
    }
}
