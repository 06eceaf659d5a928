//! The BlueZ side of BLE, through `bluer` on the D-Bus system bus: which
//! adapter this machine has, whether it is powered, and, when BLE cannot be
//! used, why ("BLE unavailable: …" in `veil status`).
//!
//! A node on a machine without Bluetooth must run normally: nothing here
//! fails the caller. [`Radio::connect`] says why BLE is unavailable (no
//! system bus, no BlueZ, no adapter); [`Radio::state`] reads the state now;
//! [`Radio::changes`] follows adapters coming and going and their power,
//! and BlueZ itself (its name on the bus, so a bluetoothd that dies without
//! a word, killed or crashed, is seen to go), so a supervisor can bring the
//! link back when the radio returns.

use std::sync::Arc;

use dbus::{message::MatchRule, nonblock::SyncConnection};
use futures::{Stream, StreamExt, stream::BoxStream};
use tokio::sync::watch;

/// Why BLE cannot be used now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// No D-Bus system bus to reach BlueZ through.
    #[error("no D-Bus system bus ({0})")]
    NoBus(String),
    /// The bus runs, but BlueZ (`bluetoothd`) does not answer on it.
    #[error("BlueZ (bluetoothd) is not running")]
    NoBluez,
    /// BlueZ runs but has no adapter.
    #[error("no Bluetooth adapter")]
    NoAdapter,
    /// The adapter is there but powered off.
    #[error("the Bluetooth adapter {0} is powered off")]
    PoweredOff(String),
    /// Anything else BlueZ said.
    #[error("BlueZ: {0}")]
    Bluez(String),
}

/// What BlueZ last reported about the radio: usable on an adapter, or not and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RadioState {
    /// BLE cannot be used, and why.
    Unavailable(Unavailable),
    /// BLE can be used: the adapter is present and powered.
    Ready {
        /// The adapter's name (`hci0`).
        adapter: String,
        /// Its Bluetooth address.
        address: String,
    },
}

impl RadioState {
    /// The line `veil status` shows: `BLE ready on hci0` or
    /// `BLE unavailable: why`.
    pub fn describe(&self) -> String {
        match self {
            Self::Unavailable(why) => format!("BLE unavailable: {why}"),
            Self::Ready { adapter, .. } => format!("BLE ready on {adapter}"),
        }
    }
}

pub(crate) fn unavailable(e: &bluer::Error) -> Unavailable {
    match &e.kind {
        // Nobody has BlueZ's name, and the bus could not start it (the
        // `Spawn` errors: activation failed).
        bluer::ErrorKind::Internal(bluer::InternalErrorKind::DBus(name))
            if name == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name == "org.freedesktop.DBus.Error.NameHasNoOwner"
                || name.starts_with("org.freedesktop.DBus.Error.Spawn.") =>
        {
            Unavailable::NoBluez
        }
        bluer::ErrorKind::NotFound => Unavailable::NoAdapter,
        _ => Unavailable::Bluez(e.to_string()),
    }
}

/// A connection to BlueZ on the system D-Bus; clones share it.
#[derive(Clone)]
pub struct Radio {
    pub(crate) session: bluer::Session,
}

/// BlueZ's name on the bus.
const BLUEZ: &str = "org.bluez";

/// Follows who owns BlueZ's bus name, on a bus connection of its own
/// (bluer's session does not say when bluetoothd goes: a daemon that dies
/// without a word leaves every adapter looking present).
struct OwnerWatch {
    changes: watch::Receiver<u64>,
    bus: tokio::task::JoinHandle<()>,
}

impl OwnerWatch {
    async fn start() -> Result<Self, Unavailable> {
        let no_bus = |e: dbus::Error| Unavailable::NoBus(e.message().unwrap_or("no message").to_owned());
        let (resource, connection) = dbus_tokio::connection::new_system_sync().map_err(no_bus)?;
        let bus = tokio::spawn(async move {
            // Ends when the bus connection is lost; the watch then stays
            // put and the radio's state, read again, says why.
            let _lost = resource.await;
        });
        let (tell, changes) = watch::channel(0u64);
        let rule =
            MatchRule::new_signal("org.freedesktop.DBus", "NameOwnerChanged").with_sender("org.freedesktop.DBus");
        let watching = Self::watch(&connection, rule, tell).await;
        if let Err(e) = watching {
            bus.abort();
            return Err(no_bus(e));
        }
        Ok(Self { changes, bus })
    }

    async fn watch(
        connection: &Arc<SyncConnection>,
        rule: MatchRule<'static>,
        tell: watch::Sender<u64>,
    ) -> Result<(), dbus::Error> {
        let matched = connection.add_match(rule).await?;
        // The match lives as long as the connection (which ends with the
        // task above); the callback only bumps a counter, so nothing queues.
        let _kept = matched.cb(move |_, (name, _old, _new): (String, String, String)| {
            if name == BLUEZ {
                tell.send_modify(|n| *n = n.wrapping_add(1));
            }
            true
        });
        Ok(())
    }
}

impl Drop for OwnerWatch {
    fn drop(&mut self) {
        self.bus.abort();
    }
}

impl std::fmt::Debug for Radio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Radio")
    }
}

impl Radio {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the
    /// standard socket). Succeeds without BlueZ or an adapter: [`Radio::state`]
    /// says what is missing, [`Radio::changes`] when it comes.
    pub async fn connect() -> Result<Self, Unavailable> {
        let session = bluer::Session::new().await.map_err(|e| Unavailable::NoBus(e.message.clone()))?;
        Ok(Self { session })
    }

    /// The radio now: the adapter `name`, else the default one (`hci0`,
    /// else the first by name).
    pub async fn state(&self, name: Option<&str>) -> RadioState {
        match self.adapter_state(name).await {
            Ok(state) => state,
            Err(why) => RadioState::Unavailable(why),
        }
    }

    async fn adapter_state(&self, name: Option<&str>) -> Result<RadioState, Unavailable> {
        let names = self.session.adapter_names().await.map_err(|e| unavailable(&e))?;
        let adapter = match name {
            Some(name) if names.iter().any(|n| n == name) => self.session.adapter(name).map_err(|e| unavailable(&e))?,
            Some(_) => return Err(Unavailable::NoAdapter),
            None if names.is_empty() => return Err(Unavailable::NoAdapter),
            None => self.session.default_adapter().await.map_err(|e| unavailable(&e))?,
        };
        let name = adapter.name().to_owned();
        if !adapter.is_powered().await.map_err(|e| unavailable(&e))? {
            return Err(Unavailable::PoweredOff(name));
        }
        let address = adapter.address().await.map_err(|e| unavailable(&e))?;
        Ok(RadioState::Ready { adapter: name, address: address.to_string() })
    }

    /// The radio's state (of the adapter `name`, else the default one) each
    /// time it may have changed: adapters added or removed (BlueZ started or
    /// stopped with them), any adapter powered on or off. The first item is
    /// the state now. Never ends; when BlueZ cannot be followed (no bus),
    /// the state is read again every [`RECHECK`].
    pub fn changes(&self, name: Option<&str>) -> impl Stream<Item = RadioState> + 'static {
        let (radio, name) = (self.clone(), name.map(str::to_owned));
        type Followed = (Option<Arc<OwnerWatch>>, Option<BoxStream<'static, ()>>);
        futures::stream::unfold((None, None), move |(owner, pending): Followed| {
            let (radio, name) = (radio.clone(), name.clone());
            async move {
                // BlueZ's name is followed only by those who follow changes
                // (a one-off state read needs no second bus connection).
                let owner = match owner {
                    Some(owner) => Some(owner),
                    None => OwnerWatch::start().await.ok().map(Arc::new),
                };
                // A subscription that ends without a sign (the bus went away)
                // waits out a recheck instead of spinning.
                if let Some(mut pending) = pending
                    && pending.next().await.is_none()
                {
                    tokio::time::sleep(RECHECK).await;
                }
                // Subscribe before reading, so no change falls between.
                let next = radio.subscribe(owner.as_deref()).await;
                Some((radio.state(name.as_deref()).await, (owner, Some(next))))
            }
        })
    }

    /// The next sign of a change: BlueZ's name changing hands, the
    /// session's adapter events, or a property of any adapter present now.
    async fn subscribe(&self, owner: Option<&OwnerWatch>) -> BoxStream<'static, ()> {
        let mut owner = owner.map(|o| o.changes.clone());
        if let Some(owner) = owner.as_mut() {
            owner.mark_unchanged();
        }
        let owner_changed = futures::stream::once(async move {
            let changed = match owner.as_mut() {
                Some(owner) => owner.changed().await.is_ok(),
                None => false,
            };
            if !changed {
                // Not followed (no bus connection of its own): look again later.
                tokio::time::sleep(RECHECK).await;
            }
        });
        let Ok(adapters) = self.session.events().await else {
            let later = futures::stream::once(tokio::time::sleep(RECHECK));
            return futures::stream::select(owner_changed, later).take(1).boxed();
        };
        let mut triggers = vec![owner_changed.boxed(), adapters.map(|_| ()).boxed()];
        for name in self.session.adapter_names().await.unwrap_or_default() {
            let Ok(adapter) = self.session.adapter(&name) else { continue };
            if let Ok(events) = adapter.events().await {
                triggers.push(events.map(|_| ()).boxed());
            }
        }
        futures::stream::select_all(triggers).take(1).boxed()
    }
}

/// How often the radio is read again when BlueZ cannot be followed.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The radio now, whatever is missing: what `veil status` shows when no
/// BLE transport is attached.
pub async fn probe() -> RadioState {
    match Radio::connect().await {
        Ok(radio) => radio.state(None).await,
        Err(why) => RadioState::Unavailable(why),
    }
}
