//! An in-process air for tests and demos: radios ([`EtherAir`]) that share
//! one [`Ether`], see each other's advertisements and connect over the
//! in-process memory transport (claiming the id `ble` and the proximity
//! kind), and that a test can power off and on.
//!
//! ```
//! use futures::StreamExt;
//! use veil_ble::{air::Air, ether::Ether};
//! use veil_crypto::advert::{AdvertKey, AdvertToken};
//!
//! # tokio_test_block_on(async {
//! let ether = Ether::default();
//! let (a, b) = (ether.radio("a"), ether.radio("b"));
//! let token = AdvertToken::new(&AdvertKey::from_bytes([7; 32]), [1, 2, 3, 4]);
//! let _on_air = a.advertise(token).await.unwrap();
//! let mut scan = b.scan().await.unwrap();
//! let seen = scan.next().await.unwrap();
//! assert_eq!((seen.token, seen.at), (token, a.address()));
//! # });
//! # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures::{StreamExt, future::BoxFuture, stream::BoxStream};
use tokio::sync::{mpsc, watch};
use veil_crypto::advert::AdvertToken;
use veil_transports::{Memory, TransportKind, TransportPlugin, libp2p::Multiaddr};

use crate::{
    air::{Air, InRange, OnAir},
    radio::{RadioState, Unavailable},
};

/// Sightings a scan holds before the oldest unseen ones are dropped.
const SCAN_QUEUE: usize = 64;

/// The in-process air the [`EtherAir`] radios share: each sees the others' advertisements; clones are the same air.
#[derive(Debug, Clone, Default)]
pub struct Ether {
    inner: Arc<Mutex<Waves>>,
}

#[derive(Debug, Default)]
struct Waves {
    next: u64,
    /// Advertisements on the air: serial, advertiser, token, address.
    adverts: Vec<(u64, u64, AdvertToken, Multiaddr)>,
    /// Running scans: scanner, where to report.
    scans: Vec<(u64, mpsc::Sender<InRange>)>,
}

impl Ether {
    fn waves(&self) -> MutexGuard<'_, Waves> {
        // A panic while holding the lock leaves plain data; go on with it.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A radio on this air, powered on, named `name` (its adapter's name).
    pub fn radio(&self, name: &str) -> EtherAir {
        let id = {
            let mut waves = self.waves();
            waves.next += 1;
            waves.next
        };
        let at: Multiaddr = format!("/memory/{}", rand_port(id)).parse().unwrap_or_else(|_| Multiaddr::empty());
        let (power, _) = watch::channel(true);
        EtherAir { ether: self.clone(), id, name: name.to_owned(), at, power: Arc::new(power) }
    }
}

/// A memory port unlikely to collide with other tests' in this process.
fn rand_port(id: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (u64::try_from(nanos % (1 << 40)).unwrap_or(0) << 16) | (id & 0xffff)
}

/// One radio on an [`Ether`].
#[derive(Debug, Clone)]
pub struct EtherAir {
    ether: Ether,
    id: u64,
    name: String,
    at: Multiaddr,
    power: Arc<watch::Sender<bool>>,
}

impl EtherAir {
    /// Where this radio listens and is dialed.
    pub fn address(&self) -> Multiaddr {
        self.at.clone()
    }

    /// Powers the radio off (its advertisements leave the air, its scans
    /// end) or on.
    pub fn set_powered(&self, on: bool) {
        if !on {
            let mut waves = self.ether.waves();
            waves.adverts.retain(|(_, by, _, _)| *by != self.id);
            waves.scans.retain(|(by, _)| *by != self.id);
        }
        self.power.send_replace(on);
    }

    fn state(&self, on: bool) -> RadioState {
        if on {
            RadioState::Ready { adapter: self.name.clone(), address: self.at.to_string() }
        } else {
            RadioState::Unavailable(Unavailable::PoweredOff(self.name.clone()))
        }
    }

    fn check_powered(&self) -> Result<(), Unavailable> {
        match *self.power.borrow() {
            true => Ok(()),
            false => Err(Unavailable::PoweredOff(self.name.clone())),
        }
    }
}

/// Takes an advertisement off the air when dropped.
struct Advert {
    ether: Ether,
    serial: u64,
}

impl Drop for Advert {
    fn drop(&mut self) {
        self.ether.waves().adverts.retain(|(serial, ..)| *serial != self.serial);
    }
}

impl Air for EtherAir {
    fn states(&self) -> BoxStream<'static, RadioState> {
        let this = self.clone();
        let power = self.power.subscribe();
        futures::stream::unfold((this, power, true), |(this, mut power, first)| async move {
            if !first {
                power.changed().await.ok()?;
            }
            let on = *power.borrow_and_update();
            Some((this.state(on), (this, power, false)))
        })
        .boxed()
    }

    fn advertise(&self, token: AdvertToken) -> BoxFuture<'static, Result<OnAir, Unavailable>> {
        let this = self.clone();
        Box::pin(async move {
            this.check_powered()?;
            let mut waves = this.ether.waves();
            waves.next += 1;
            let serial = waves.next;
            waves.adverts.push((serial, this.id, token, this.at.clone()));
            let seen = InRange { at: this.at.clone(), token };
            waves.scans.retain(|(by, to)| {
                *by == this.id || !matches!(to.try_send(seen.clone()), Err(mpsc::error::TrySendError::Closed(_)))
            });
            drop(waves);
            Ok(Box::new(Advert { ether: this.ether.clone(), serial }) as OnAir)
        })
    }

    fn scan(&self) -> BoxFuture<'static, Result<BoxStream<'static, InRange>, Unavailable>> {
        let this = self.clone();
        Box::pin(async move {
            this.check_powered()?;
            let (tx, mut rx) = mpsc::channel(SCAN_QUEUE);
            let mut waves = this.ether.waves();
            for (_, by, token, at) in &waves.adverts {
                if *by != this.id {
                    let _ = tx.try_send(InRange { at: at.clone(), token: *token });
                }
            }
            waves.scans.push((this.id, tx));
            drop(waves);
            Ok(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed())
        })
    }

    fn scan_stopped(&self, _limit: Duration) -> BoxFuture<'static, Result<bool, Unavailable>> {
        Box::pin(async { Ok(true) })
    }

    fn link(&self, _ready: &RadioState) -> (Arc<dyn TransportPlugin>, Vec<Multiaddr>) {
        (Arc::new(Memory::emulating(crate::l2cap::BLE, TransportKind::Proximity)), vec![self.at.clone()])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use veil_crypto::advert::AdvertKey;

    use super::*;

    fn token(n: u8) -> AdvertToken {
        AdvertToken::new(&AdvertKey::from_bytes([n; 32]), [n; 4])
    }

    #[tokio::test]
    async fn radios_see_each_other_and_not_themselves_and_power_ends_it_all() {
        let ether = Ether::default();
        let (a, b) = (ether.radio("a"), ether.radio("b"));
        let mut states = a.states();
        assert!(matches!(states.next().await, Some(RadioState::Ready { .. })));
        let mut scan_a = a.scan().await.unwrap();
        let on_air_b = b.advertise(token(2)).await.unwrap();
        let _on_air_a = a.advertise(token(1)).await.unwrap();
        let mut scan_b = b.scan().await.unwrap();
        assert_eq!(scan_a.next().await.unwrap(), InRange { at: b.address(), token: token(2) });
        assert_eq!(scan_b.next().await.unwrap(), InRange { at: a.address(), token: token(1) });
        drop(on_air_b);
        assert!(a.scan().await.unwrap().next().now_or_never_is_pending());

        a.set_powered(false);
        assert_eq!(states.next().await, Some(RadioState::Unavailable(Unavailable::PoweredOff("a".into()))));
        assert_eq!(scan_a.next().await, None, "a scan ends with the power");
        assert!(a.advertise(token(1)).await.is_err() && a.scan().await.is_err());
        assert!(b.scan().await.unwrap().next().now_or_never_is_pending(), "a's advertisement left the air");
        a.set_powered(true);
        assert!(matches!(states.next().await, Some(RadioState::Ready { .. })));
    }

    trait Pending {
        fn now_or_never_is_pending(self) -> bool;
    }

    impl<F: std::future::Future + Unpin> Pending for F {
        fn now_or_never_is_pending(self) -> bool {
            futures::FutureExt::now_or_never(self).is_none()
        }
    }
}
