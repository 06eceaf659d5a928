//! Inbound frame streams: frames read, handed to the network task, acknowledged
//! once the consumer accepted them.

use super::*;

/// The acknowledgement state of one inbound frame stream, shared with the driver.
pub(crate) struct Acks {
    accepted: AtomicU64,
    open: AtomicBool,
    notify: Notify,
}

impl Acks {
    /// Whether the stream can still acknowledge (its sender still waits).
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Counts one frame as accepted by the application.
    pub(crate) fn accept(&self) {
        self.accepted.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_one();
    }
}

/// A frame read by an inbound frame stream, on its way to the event channel.
pub(crate) struct Inbound {
    pub(crate) peer: PeerId,
    pub(crate) frame: Vec<u8>,
    pub(crate) acks: Arc<Acks>,
    /// The swarm generation it arrived on (older ones are dropped).
    pub(crate) generation: u64,
}

/// Starts an inbound frame stream; `slots` counts the connection's open
/// inbound frame streams.
pub(crate) fn spawn_inbound(
    runtime: &tokio::runtime::Handle,
    peer: PeerId,
    stream: Stream,
    generation: u64,
    deliver: mpsc::Sender<Inbound>,
    slots: Arc<AtomicUsize>,
    settings: StreamSettings,
) {
    runtime.spawn(async move {
        inbound(peer, stream, generation, deliver, settings).await;
        slots.fetch_sub(1, Ordering::AcqRel);
    });
}

async fn inbound(
    peer: PeerId,
    stream: Stream,
    generation: u64,
    deliver: mpsc::Sender<Inbound>,
    settings: StreamSettings,
) {
    let StreamSettings { max_frame, mut stop, mut closed, .. } = settings;
    let (reader, mut writer) = stream.split();
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let acks = Arc::new(Acks { accepted: AtomicU64::new(0), open: AtomicBool::new(true), notify: Notify::new() });

    let read = async {
        loop {
            let frame = codec::read_frame(&mut reader, max_frame).await?;
            let item = Inbound { peer, frame, acks: acks.clone(), generation };
            if deliver.send(item).await.is_err() {
                return Ok::<_, std::io::Error>(());
            }
        }
    };
    let acknowledge = async {
        let mut sent = 0u64;
        let mut buf = Vec::new();
        loop {
            acks.notify.notified().await;
            let accepted = acks.accepted.load(Ordering::Acquire);
            if accepted > sent {
                buf.clear();
                codec::encode_acks(accepted - sent, &mut buf);
                writer.write_all(&buf).await?;
                writer.flush().await?;
                sent = accepted;
            }
        }
    };
    let outcome = tokio::select! {
        biased;
        _ = stopped(&mut stop) => Ok(()),
        () = connection_closed(&mut closed) => Ok(()),
        r = read => r,
        r = acknowledge => r,
    };
    acks.open.store(false, Ordering::Release);
    if let Err(e) = outcome
        && e.kind() != std::io::ErrorKind::UnexpectedEof
    {
        tracing::debug!(%peer, error = %e, "inbound frame stream closed");
    }
}
