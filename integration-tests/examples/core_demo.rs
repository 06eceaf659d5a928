//! veil's core, end to end, in one process: Alice shares a contact link, Bob
//! finds her rendezvous point and sends a contact request over the Noise XK
//! handshake, both derive their 1:1 group, and they exchange ratcheted,
//! sealed log entries — including one out of order and one replay.
//!
//! Run with `cargo run -p veil-integration-tests --example core_demo`.
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail, ensure};
use veil_crypto::{
    ContactLink, GroupKeys, Identity, Name, OsEntropy, ReceiverChain, RendezvousSeed, SenderChain,
    contact_group_secret,
    envelope::{BodyKey, EntryHash, EntryKind, Position, SealedEntry, open_entry, seal_entry},
    handshake::{Requester, Responder},
    ratchet::DEFAULT_WINDOW,
    rendezvous::{Schedule, Topic, check_point_proof, point_proof},
    time::{Clock, SystemClock},
};
use veil_proto::{
    entry::{decode_entry, encode_entry},
    handshake::{ContactRequest, HandshakeFrame},
    link,
};

fn short(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>() + "…"
}

/// One side of the conversation: its chain, its view of the peer's chain, its log heads.
struct Side {
    name: &'static str,
    device: veil_crypto::SigningSecret,
    chain: SenderChain,
    peer_chain: Option<ReceiverChain>,
}

fn send(keys: &GroupKeys, from: &mut Side, lamport: u64, parents: Vec<EntryHash>, text: &str) -> Result<Vec<u8>> {
    let position = Position { kind: EntryKind::Message, lamport, parents };
    let entry =
        seal_entry(keys, &from.device, &position, BodyKey::Message(&mut from.chain), text.as_bytes(), &mut OsEntropy)?;
    let wire = encode_entry(&entry);
    println!(
        "  {} → sealed entry {:?}: {} bytes on the wire for {} bytes of text",
        from.name,
        entry.hash(),
        wire.len(),
        text.len()
    );
    Ok(wire)
}

fn receive(keys: &GroupKeys, to: &mut Side, wire: &[u8]) -> Result<String> {
    let entry: SealedEntry = decode_entry(wire)?;
    let opened = open_entry(keys, &entry)?;
    let chain = to.peer_chain.as_mut().context("no chain state for the peer yet")?;
    let text = opened.read_message(chain)?;
    Ok(String::from_utf8(text.to_vec())?)
}

fn main() -> Result<()> {
    let mut rng = OsEntropy;
    let now = SystemClock.now();
    println!("1. Alice and Bob create identities offline: no phone number, no server.");
    let alice = Identity::generate(&mut rng)?;
    let bob = Identity::generate(&mut rng)?;
    let alice_seed = RendezvousSeed::generate(&mut rng)?;
    let bob_seed = RendezvousSeed::generate(&mut rng)?;

    println!("\n2. Alice shares her contact link (as text, or as a QR code):");
    let alice_link =
        ContactLink { account: alice.account.public(), seed: alice_seed, display_name: Some(Name::new("Alice")?) };
    let uri = link::contact_uri(&alice_link);
    println!("   {uri}\n   {}", link::contact_qr(&alice_link));

    println!("\n3. Bob opens the link and computes where Alice waits this period (24 h rotation):");
    let parsed = link::parse_contact(&uri)?;
    let schedule = Schedule::DEFAULT;
    let topic = Topic::contact(&parsed.account.signing);
    let here = schedule.point_at(&topic, &parsed.seed, now);
    let next = schedule.point_at(&topic, &parsed.seed, schedule.next_boundary(now));
    println!("   rendezvous point now:   {}", here.to_hex());
    println!("   after the next rotation: {} (unlinkable without the seed)", next.to_hex());

    println!("\n4. Bob sends a contact request through the Noise XK handshake:");
    let request = ContactRequest { display_name: Some(Name::new("Bob")?), seed: bob_seed }.encode();
    let (requester, m1) = Requester::start(&bob.account, &parsed.account, &request)?;
    // Message 1 proves Bob knows the link's current point: after a reset, an
    // old link's point no longer matches and Alice does not answer.
    let f1 = HandshakeFrame::RequestStart { point_proof: point_proof(&here, &m1), message: m1 }.encode();
    let HandshakeFrame::RequestStart { message: m1, point_proof: proof } = HandshakeFrame::decode(&f1)? else {
        bail!("unexpected frame")
    };
    ensure!(check_point_proof(&here, &m1, &proof), "the point proof does not match");
    let (responder, m2) = Responder::respond(&alice.account, &m1)?;
    let (sent, m3) = requester.read_response(&m2)?;
    let incoming = responder.read_request(&m3)?;
    let req = ContactRequest::decode(&incoming.request)?;
    println!(
        "   messages of {}, {} and {} bytes; Alice sees a request from {:?} ({:?}), its payload encrypted end to end",
        f1.len(),
        m2.len(),
        m3.len(),
        req.display_name.as_ref().map(Name::as_str).unwrap_or("?"),
        incoming.requester.signing
    );
    assert_eq!(sent.handshake_hash, incoming.handshake_hash);

    println!("\n5. Alice accepts; each side derives the same 1:1 group on its own:");
    let keys_a = GroupKeys::derive(&contact_group_secret(&alice.account, &incoming.requester)?);
    let keys_b = GroupKeys::derive(&contact_group_secret(&bob.account, &sent.responder)?);
    assert_eq!(keys_a.id, keys_b.id);
    println!(
        "   group {} on both sides; its own rotating point: {}",
        short(&keys_a.id.0),
        short(&schedule.point_at(&Topic::group(), &keys_a.rendezvous_seed, now).0)
    );

    let mut a =
        Side { name: "Alice", device: alice.device.clone(), chain: SenderChain::generate(&mut rng)?, peer_chain: None };
    let mut b =
        Side { name: "Bob", device: bob.device.clone(), chain: SenderChain::generate(&mut rng)?, peer_chain: None };
    a.peer_chain = Some(ReceiverChain::new(b.chain.state().clone(), DEFAULT_WINDOW)?);
    b.peer_chain = Some(ReceiverChain::new(a.chain.state().clone(), DEFAULT_WINDOW)?);

    println!("\n6. Ratcheted messages (each key used once, then deleted):");
    let w1 = send(&keys_a, &mut a, 1, vec![], "Hi Bob! Welcome to veil.")?;
    println!("  Bob reads: {:?}", receive(&keys_b, &mut b, &w1)?);
    let w2 = send(&keys_b, &mut b, 2, vec![], "Hi Alice. Nobody saw my phone number.")?;
    let w3 = send(&keys_b, &mut b, 3, vec![], "And this one may arrive first.")?;
    println!("  Alice reads (out of order): {:?}", receive(&keys_a, &mut a, &w3)?);
    println!("  Alice reads: {:?}", receive(&keys_a, &mut a, &w2)?);
    match receive(&keys_a, &mut a, &w2) {
        Err(e) => println!("  a replayed entry is refused: {e}"),
        Ok(_) => bail!("a replay was accepted"),
    }
    let mut tampered = w1.clone();
    let last = tampered.len() - 40;
    tampered[last] ^= 1;
    match receive(&keys_b, &mut b, &tampered) {
        Err(e) => println!("  a tampered entry is refused: {e}"),
        Ok(_) => bail!("a tampered entry was accepted"),
    }
    println!("\nDone: link → handshake → group → ratcheted messages, all offline-capable and end-to-end sealed.");
    Ok(())
}
