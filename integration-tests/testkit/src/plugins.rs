//! Transport plug-ins that fail on purpose.

use veil_actors::transports::{
    BoxedTransport, Error, TransportId, TransportKind, TransportPlugin,
    libp2p::{Multiaddr, identity::Keypair},
};

/// A plug-in whose `build` panics: a bug in someone else's transport. It
/// handles no address, so attaching it is all it does; the panic happens
/// inside the network task, which must survive it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Buggy;

impl TransportPlugin for Buggy {
    fn id(&self) -> TransportId {
        TransportId::from_static("buggy")
    }
    fn kind(&self) -> TransportKind {
        TransportKind::Ip
    }
    fn handles(&self, _: &Multiaddr) -> bool {
        false
    }
    fn build(&self, _: &Keypair) -> Result<BoxedTransport, Error> {
        panic!("a bug in a transport plug-in")
    }
}
