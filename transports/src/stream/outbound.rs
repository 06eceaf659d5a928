//! Outbound frame streams: frames written in order, several per write, each
//! acknowledged by the peer or failed.

use super::*;

struct Pending {
    deadline: Instant,
    reply: oneshot::Sender<Delivery>,
}

/// Starts the outbound frame stream on `stream` and registers it in the table.
pub(crate) fn spawn_outbound(
    runtime: &tokio::runtime::Handle,
    peer: PeerId,
    stream: Stream,
    settings: StreamSettings,
) -> FrameSender {
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let id = settings.table.next_id.fetch_add(1, Ordering::Relaxed);
    let sender = FrameSender { id, tx, local: settings.local };
    settings.table.insert(peer, sender.clone());
    runtime.spawn(outbound(peer, id, stream, rx, settings));
    sender
}

/// Why an outbound frame stream ended.
enum End {
    Idle,
    Failed(SendFailure),
    /// The swarm restarted or shut down.
    Stopped(Stop),
}

async fn outbound(peer: PeerId, id: u64, stream: Stream, mut rx: mpsc::Receiver<OutFrame>, settings: StreamSettings) {
    let StreamSettings { max_frame, max_in_flight, ack_timeout, idle_timeout, mut stop, table, mut closed, .. } =
        settings;
    let (mut reader, mut writer) = stream.split();
    let pending: Mutex<VecDeque<Pending>> = Mutex::new(VecDeque::new());
    let lock = || pending.lock().unwrap_or_else(|e| e.into_inner());
    let room = Notify::new();
    let failed = |e: std::io::Error| End::Failed(SendFailure::Io(e.kind()));

    // Writes what is queued, in order, several frames per write.
    let write = async {
        let mut buf = Vec::with_capacity(WRITE_BATCH);
        loop {
            if lock().len() >= max_in_flight {
                room.notified().await;
                continue;
            }
            let first = match tokio::time::timeout(idle_timeout, rx.recv()).await {
                Ok(Some(f)) => f,
                Ok(None) => return End::Idle,
                Err(_) if lock().is_empty() => return End::Idle,
                Err(_) => continue,
            };
            buf.clear();
            let deadline = Instant::now() + ack_timeout;
            let mut next = Some(first);
            while let Some(OutFrame { frame, reply }) = next.take() {
                match codec::encode_frame(&frame, max_frame, &mut buf) {
                    Ok(()) => lock().push_back(Pending { deadline, reply }),
                    Err(_) => {
                        let e = Error::FrameTooLarge { len: frame.len(), max: max_frame };
                        let _ = reply.send(Delivery::Done(Err(e)));
                    }
                }
                if buf.len() < WRITE_BATCH && lock().len() < max_in_flight {
                    next = rx.try_recv().ok();
                }
            }
            if buf.is_empty() {
                continue;
            }
            if let Err(e) = writer.write_all(&buf).await {
                return failed(e);
            }
            if let Err(e) = writer.flush().await {
                return failed(e);
            }
        }
    };

    // Resolves frames as their acknowledgements arrive.
    let read = async {
        loop {
            let mut count = [0u8; 4];
            if let Err(e) = reader.read_exact(&mut count).await {
                return failed(e);
            }
            let done: Vec<Pending> = {
                let mut p = lock();
                match codec::check_ack(u32::from_be_bytes(count), p.len()) {
                    Ok(n) => p.drain(..n).collect(),
                    Err(e) => return failed(e),
                }
            };
            room.notify_one();
            for p in done {
                let _ = p.reply.send(Delivery::Done(Ok(())));
            }
        }
    };

    // Fails the stream once its oldest frame has waited too long.
    let watchdog = async {
        let tick = (ack_timeout / 8).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            if lock().front().is_some_and(|p| p.deadline <= Instant::now()) {
                return End::Failed(SendFailure::AckTimedOut);
            }
        }
    };

    let end = tokio::select! {
        biased;
        s = stopped(&mut stop) => End::Stopped(s),
        () = connection_closed(&mut closed) => End::Failed(SendFailure::ConnectionClosed),
        e = write => e,
        e = read => e,
        e = watchdog => e,
    };
    // New sends go to a new frame stream from now on.
    table.remove(&peer, id);
    rx.close();
    let error = || match &end {
        End::Stopped(s) => s.error(),
        End::Failed(e) => Error::SendFailed(e.clone()),
        End::Idle => Error::SendFailed(SendFailure::StreamClosed),
    };
    for p in lock().drain(..) {
        let _ = p.reply.send(Delivery::Done(Err(error())));
    }
    // Never written: the sender may try them on a new frame stream (unless
    // the whole swarm is going away).
    let stopping = matches!(end, End::Stopped(_));
    while let Ok(f) = rx.try_recv() {
        let outcome = if stopping { Delivery::Done(Err(error())) } else { Delivery::Unsent(f.frame) };
        let _ = f.reply.send(outcome);
    }
    match &end {
        End::Idle => {
            tracing::debug!(%peer, "idle frame stream closed");
            // The peer's inbound frame stream ends at the end of the substream.
            let _ = tokio::time::timeout(ack_timeout, writer.close()).await;
        }
        End::Failed(e) => tracing::debug!(%peer, error = %e, "frame stream closed"),
        End::Stopped(_) => tracing::debug!(%peer, "frame stream stopped with its swarm"),
    }
    // Dropping the halves resets whatever is left of the stream.
}
