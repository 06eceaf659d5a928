//! The BlueZ side of BLE, through `bluer` on the D-Bus system bus: which
//! adapter this machine has, whether it is powered, and, when BLE cannot be
//! used, why ("BLE unavailable: …" in `veil status`).
//!
//! A node on a machine without Bluetooth must run normally: nothing here
//! fails the caller. [`Radio::connect`] says why BLE is unavailable (no
//! system bus, no BlueZ, no adapter); [`Radio::state`] reads the state now;
//! [`Radio::changes`] follows adapters coming and going and their power, so
//! a supervisor can bring the link back when the radio returns.

use futures::{Stream, StreamExt, stream::BoxStream};

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

/// The radio as BlueZ reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RadioState {
    /// BLE cannot be used, and why.
    Unavailable(Unavailable),
    /// A powered adapter.
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
        bluer::ErrorKind::Internal(bluer::InternalErrorKind::DBus(name))
            if name == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
        {
            Unavailable::NoBluez
        }
        bluer::ErrorKind::NotFound => Unavailable::NoAdapter,
        _ => Unavailable::Bluez(e.to_string()),
    }
}

/// A session with BlueZ.
#[derive(Clone)]
pub struct Radio {
    pub(crate) session: bluer::Session,
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
        futures::stream::unfold(None, move |pending: Option<BoxStream<'static, ()>>| {
            let (radio, name) = (radio.clone(), name.clone());
            async move {
                // A subscription that ends without a sign (the bus went away)
                // waits out a recheck instead of spinning.
                if let Some(mut pending) = pending
                    && pending.next().await.is_none()
                {
                    tokio::time::sleep(RECHECK).await;
                }
                // Subscribe before reading, so no change falls between.
                let next = radio.subscribe().await;
                Some((radio.state(name.as_deref()).await, Some(next)))
            }
        })
    }

    /// The next sign of a change: the session's adapter events, or a
    /// property of any adapter present now.
    async fn subscribe(&self) -> BoxStream<'static, ()> {
        let Ok(adapters) = self.session.events().await else {
            return futures::stream::once(tokio::time::sleep(RECHECK)).boxed();
        };
        let mut triggers = vec![adapters.map(|_| ()).boxed()];
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
