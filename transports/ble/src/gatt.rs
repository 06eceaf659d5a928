//! veil over GATT, for controllers without L2CAP connection-oriented
//! channels (docs/PROTOCOL.md §13): the peripheral serves veil's GATT
//! service with two characteristics, the central writes packets to one
//! (write without response) and receives packets as notifications of the
//! other; [`crate::stream::PacketStream`] makes them a byte stream with
//! credit flow control, and the [`crate::l2cap::Ble`] plug-in carries it
//! for addresses ending in `.gatt` (Noise and yamux on top as on L2CAP).
//!
//! BlueZ hands each characteristic's packets over a socket of its own
//! (`AcquireWrite`, `AcquireNotify`), paired here by the central's device
//! address. Notifications through `AcquireNotify` reach every subscribed
//! central, so a peripheral carries one GATT link at a time: a second
//! central's link is refused until the first ends.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bluer::{
    Address, Session, Uuid,
    gatt::{
        CharacteristicReader, CharacteristicWriter,
        local::{
            Application, Characteristic, CharacteristicControlEvent, CharacteristicNotify, CharacteristicNotifyMethod,
            CharacteristicWrite, CharacteristicWriteMethod, Service, characteristic_control,
        },
    },
};
use futures::{FutureExt, Sink, Stream, StreamExt, future::BoxFuture};
use libp2p::{
    Multiaddr,
    core::{
        Endpoint,
        transport::{DialOpts, ListenerId, TransportError, TransportEvent},
    },
};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use crate::{
    addr::{BleAddr, GATT},
    air::SERVICE,
    packet::MAX_PACKET,
    stream::{PacketLink, PacketStream},
};

/// The characteristic the central writes its packets to.
pub const TO_PERIPHERAL: Uuid = Uuid::from_u128(0x6d1c_2a4e_93f0_4b7e_8a55_0c3e_9b21_f7d5);
/// The characteristic whose notifications carry the peripheral's packets.
pub const TO_CENTRAL: Uuid = Uuid::from_u128(0x6d1c_2a4e_93f0_4b7e_8a55_0c3e_9b21_f7d6);

/// The largest packet sent over GATT. BlueZ before 5.69 (Debian 12 has
/// 5.66) checks a written value's length with the attribute handle counted
/// in, so it drops a Write Command whose value is over 510 bytes, silently
/// (no response is owed): one lost packet stalls the link for good, since
/// it has no retransmission (upstream fix 8bf3a4a26). Notifications are
/// held to the same size.
pub const MAX_GATT_VALUE: usize = MAX_PACKET - 2;

/// Packets queued each way between a link's task and its stream.
const QUEUE: usize = 32;
/// Links accepted and not yet taken by the swarm.
const BACKLOG: usize = 4;
/// How long a central may take to subscribe after it wrote (or the other
/// way round) before its half is dropped.
const PAIRING: Duration = Duration::from_secs(10);
/// Most halves waiting for their other half, each way: more centrals at
/// once are refused (dropped; they may dial again).
const MAX_HALVES: usize = 8;

/// One GATT link: BlueZ's two sockets, served by a task of their own.
#[derive(Debug)]
pub struct GattLink {
    out: PollSender<Vec<u8>>,
    received: mpsc::Receiver<io::Result<Vec<u8>>>,
    max: usize,
}

impl GattLink {
    /// Carries packets from `reader` and to `writer` (a tokio runtime must
    /// be running).
    fn spawn(reader: CharacteristicReader, writer: CharacteristicWriter) -> Self {
        let max = writer.mtu().min(MAX_GATT_VALUE);
        let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let (in_tx, in_rx) = mpsc::channel(QUEUE);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    packet = out_rx.recv() => {
                        let Some(packet) = packet else { break };
                        if let Err(e) = writer.send(&packet).await {
                            let _ = in_tx.send(Err(e)).await;
                            break;
                        }
                    }
                    got = reader.recv() => match got {
                        // BlueZ closed its end: the central went away.
                        Ok(packet) if packet.is_empty() => break,
                        Ok(packet) => {
                            if in_tx.send(Ok(packet)).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = in_tx.send(Err(e)).await;
                            break;
                        }
                    },
                }
            }
        });
        Self { out: PollSender::new(out_tx), received: in_rx, max }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the GATT link ended")
}

impl Sink<Vec<u8>> for GattLink {
    type Error = io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_reserve(cx).map_err(|_| gone())
    }

    fn start_send(mut self: Pin<&mut Self>, packet: Vec<u8>) -> io::Result<()> {
        self.out.send_item(packet).map_err(|_| gone())
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.close();
        Poll::Ready(Ok(()))
    }
}

impl Stream for GattLink {
    type Item = io::Result<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.received.poll_recv(cx)
    }
}

impl PacketLink for GattLink {
    fn max_packet(&self) -> usize {
        self.max
    }
}

/// A byte stream over veil's GATT service: packets under credit flow control, delivered in order whatever order they
/// arrive in.
pub type GattStream = PacketStream<GattLink>;

fn bluez(e: bluer::Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// The adapter whose public address is `device`, else (all zeros) the
/// default one.
async fn adapter_at(session: &Session, device: [u8; 6]) -> io::Result<bluer::Adapter> {
    if device == [0; 6] {
        return session.default_adapter().await.map_err(bluez);
    }
    for name in session.adapter_names().await.map_err(bluez)? {
        let adapter = session.adapter(&name).map_err(bluez)?;
        if adapter.address().await.map_err(bluez)?.0 == device {
            return Ok(adapter);
        }
    }
    Err(io::Error::new(io::ErrorKind::NotFound, "no adapter with that address"))
}

/// How long BlueZ may take to resolve a connected device's GATT services.
const SERVICES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects to veil's GATT service on `to`, from the adapter `from` (all
/// zeros: the default one).
pub async fn dial(from: [u8; 6], to: BleAddr) -> io::Result<GattStream> {
    let session = Session::new().await.map_err(bluez)?;
    let adapter = adapter_at(&session, from).await?;
    let device = adapter.device(Address(to.device)).map_err(bluez)?;
    if !device.is_connected().await.map_err(bluez)? {
        device.connect().await.map_err(bluez)?;
    }
    // BlueZ answers once it has discovered the device's services; a
    // discovery that stalls (seen with EATT between two Linux 6.12 hosts,
    // docs/TRANSPORTS.md) is said as such, and the link is dropped so the
    // next dial starts afresh.
    let services = match tokio::time::timeout(SERVICES_TIMEOUT, device.services()).await {
        Ok(services) => services.map_err(bluez)?,
        Err(_) => {
            let _ = device.disconnect().await;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the device's GATT services were not resolved (BlueZ's discovery stalled; is EATT on? see [GATT] Channels)",
            ));
        }
    };
    let (mut to_peripheral, mut to_central) = (None, None);
    for service in services {
        if service.uuid().await.map_err(bluez)? != SERVICE {
            continue;
        }
        for characteristic in service.characteristics().await.map_err(bluez)? {
            match characteristic.uuid().await.map_err(bluez)? {
                TO_PERIPHERAL => to_peripheral = Some(characteristic),
                TO_CENTRAL => to_central = Some(characteristic),
                _ => {}
            }
        }
    }
    let (Some(to_peripheral), Some(to_central)) = (to_peripheral, to_central) else {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no veil GATT service there"));
    };
    let reader = to_central.notify_io().await.map_err(bluez)?;
    let writer = to_peripheral.write_io().await.map_err(bluez)?;
    Ok(PacketStream::new(GattLink::spawn(reader, writer)))
}

/// Serves veil's GATT service on the adapter at `device` (all zeros: the
/// default one) and sends each central's link to `links`, until the
/// receiver is dropped or BlueZ fails.
async fn serve(device: [u8; 6], links: mpsc::Sender<(Address, GattLink)>) -> io::Result<()> {
    let session = Session::new().await.map_err(bluez)?;
    let adapter = adapter_at(&session, device).await?;
    let (writes, write_handle) = characteristic_control();
    let (notifies, notify_handle) = characteristic_control();
    let write = CharacteristicWrite {
        write_without_response: true,
        method: CharacteristicWriteMethod::Io,
        ..CharacteristicWrite::default()
    };
    let notify = CharacteristicNotify {
        notify: true,
        method: CharacteristicNotifyMethod::Io,
        ..CharacteristicNotify::default()
    };
    let application = Application {
        services: vec![Service {
            uuid: SERVICE,
            primary: true,
            characteristics: vec![
                Characteristic {
                    uuid: TO_PERIPHERAL,
                    write: Some(write),
                    control_handle: write_handle,
                    ..Characteristic::default()
                },
                Characteristic {
                    uuid: TO_CENTRAL,
                    notify: Some(notify),
                    control_handle: notify_handle,
                    ..Characteristic::default()
                },
            ],
            ..Service::default()
        }],
        ..Application::default()
    };
    let _served = adapter.serve_gatt_application(application).await.map_err(bluez)?;
    let (mut writes, mut notifies) = (Box::pin(writes), Box::pin(notifies));
    // Halves waiting for their other half, by central, with when they came.
    let mut readers: HashMap<Address, (CharacteristicReader, tokio::time::Instant)> = HashMap::new();
    let mut writers: HashMap<Address, (CharacteristicWriter, tokio::time::Instant)> = HashMap::new();
    loop {
        tokio::select! {
            event = writes.next() => match event {
                Some(CharacteristicControlEvent::Write(request)) if readers.len() < MAX_HALVES => {
                    let reader = request.accept().map_err(bluez)?;
                    readers.insert(reader.device_address(), (reader, tokio::time::Instant::now()));
                }
                Some(CharacteristicControlEvent::Write(request)) => request.reject(bluer::gatt::local::ReqError::Failed),
                Some(CharacteristicControlEvent::Notify(_)) => {}
                None => return Ok(()),
            },
            event = notifies.next() => match event {
                Some(CharacteristicControlEvent::Notify(writer)) if writers.len() < MAX_HALVES => {
                    writers.insert(writer.device_address(), (writer, tokio::time::Instant::now()));
                }
                Some(CharacteristicControlEvent::Notify(_)) => {}
                Some(CharacteristicControlEvent::Write(request)) => request.reject(bluer::gatt::local::ReqError::NotSupported),
                None => return Ok(()),
            },
            () = links.closed() => return Ok(()),
        }
        let stale = tokio::time::Instant::now() - PAIRING;
        readers.retain(|_, (_, at)| *at > stale);
        writers.retain(|_, (_, at)| *at > stale);
        let paired: Vec<Address> = readers.keys().filter(|a| writers.contains_key(a)).copied().collect();
        for central in paired {
            if let (Some((reader, _)), Some((writer, _))) = (readers.remove(&central), writers.remove(&central)) {
                // A link the swarm has no room for is dropped (BlueZ closes
                // it): the central dials again.
                let _ = links.try_send((central, GattLink::spawn(reader, writer)));
            }
        }
    }
}

struct Listener {
    id: ListenerId,
    addr: Multiaddr,
    links: mpsc::Receiver<(Address, GattLink)>,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// GATT links as a libp2p transport of byte streams (no security, no
/// multiplexing: the [`crate::l2cap::Ble`] plug-in adds both).
#[derive(Default)]
pub struct GattTransport {
    from: [u8; 6],
    listeners: Vec<Listener>,
    owed: crate::events::Owed<futures::future::Ready<io::Result<GattStream>>>,
}

impl std::fmt::Debug for GattTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GattTransport").field("listeners", &self.listeners.len()).finish_non_exhaustive()
    }
}

impl GattTransport {
    /// Dialing from the adapter at `from` (all zeros: the default one).
    pub fn from_adapter(from: [u8; 6]) -> Self {
        Self { from, ..Self::default() }
    }
}

/// The GATT address `addr` names.
fn gatt_of(addr: &Multiaddr) -> Option<BleAddr> {
    BleAddr::parse(addr).ok().filter(|a| a.psm == GATT)
}

impl libp2p::Transport for GattTransport {
    type Output = GattStream;
    type Error = io::Error;
    type ListenerUpgrade = futures::future::Ready<io::Result<GattStream>>;
    type Dial = BoxFuture<'static, io::Result<GattStream>>;

    fn listen_on(&mut self, id: ListenerId, requested: Multiaddr) -> Result<(), TransportError<io::Error>> {
        let Some(addr) = gatt_of(&requested) else { return Err(TransportError::MultiaddrNotSupported(requested)) };
        let (tx, links) = mpsc::channel(BACKLOG);
        let task = tokio::spawn(serve(addr.device, tx));
        let addr = addr.to_multiaddr();
        self.listeners.push(Listener { id, addr: addr.clone(), links, task });
        self.owed.push(TransportEvent::NewAddress { listener_id: id, listen_addr: addr });
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.owed.remove(&mut self.listeners, id, |l| l.id)
    }

    fn dial(&mut self, target: Multiaddr, opts: DialOpts) -> Result<Self::Dial, TransportError<io::Error>> {
        let Some(to) = gatt_of(&target).filter(|a| a.device != [0; 6] && opts.role == Endpoint::Dialer) else {
            return Err(TransportError::MultiaddrNotSupported(target));
        };
        let from = self.from;
        Ok(async move {
            match tokio::time::timeout(crate::l2cap::CONNECT_TIMEOUT, dial(from, to)).await {
                Ok(dialed) => dialed,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no GATT link in time")),
            }
        }
        .boxed())
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        let this = &mut *self;
        if let Some(event) = this.owed.pop() {
            return Poll::Ready(event);
        }
        for i in 0..this.listeners.len() {
            let listener = &mut this.listeners[i];
            match listener.links.poll_recv(cx) {
                Poll::Ready(Some((central, link))) => {
                    // BlueZ does not say the central's address type; an LE
                    // central's address is random where privacy is on.
                    let from = BleAddr { device: central.0, random: true, psm: GATT };
                    return Poll::Ready(TransportEvent::Incoming {
                        listener_id: listener.id,
                        upgrade: futures::future::ready(Ok(PacketStream::new(link))),
                        local_addr: listener.addr.clone(),
                        send_back_addr: from.to_multiaddr(),
                    });
                }
                Poll::Ready(None) => {
                    let listener = this.listeners.remove(i);
                    return Poll::Ready(TransportEvent::ListenerClosed {
                        listener_id: listener.id,
                        reason: Err(io::Error::other("BlueZ stopped serving veil's GATT service")),
                    });
                }
                Poll::Pending => {}
            }
        }
        this.owed.park(cx);
        Poll::Pending
    }
}
