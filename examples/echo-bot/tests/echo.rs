//! The bot answers a user it has never met: the user adds its link, the bot
//! accepts, the user says "ping" and reads "echo: ping". Three nodes on
//! loopback TCP (a rendezvous server, the bot, the user), no sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use tokio::time::timeout;
use veil_actors::{Node, NodeBuilder, NodeEvent, RetryPolicy};
use veil_crypto::{
    rendezvous::Schedule,
    time::{ManualClock, UnixTime},
};
use veil_storage::keystore::KdfParams;
use veil_transports::{NetworkConfig, Tcp, libp2p::Multiaddr};

const WAIT: Duration = Duration::from_secs(60);

fn builder(dir: &tempfile::TempDir, clock: &ManualClock, config: NetworkConfig) -> NodeBuilder {
    Node::builder()
        .data_dir(dir.path())
        .kdf(KdfParams::FAST_INSECURE_FOR_TESTS)
        .clock(Arc::new(clock.clone()))
        .rendezvous_schedule(Schedule::new(3600, 60).unwrap())
        .contact_retry(RetryPolicy { base: Duration::from_millis(100), max: Duration::from_secs(1) })
        .sync_interval(Duration::from_millis(100))
        .network_config(config)
        .transport(Arc::new(Tcp::new()))
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_accepts_a_stranger_and_echoes_its_message() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // Ten minutes into an hour-long period: no rotation during the test.
    let clock = ManualClock::new(UnixTime(1_800_000_000 + 600));
    let mut server_config = NetworkConfig::default();
    (server_config.mdns, server_config.rendezvous_server) = (false, true);
    let server = builder(&dirs[0], &clock, server_config).rotate_network_key_each_period(false).spawn().await.unwrap();
    let status = server.network_status().await.unwrap();
    let p2p = veil_transports::libp2p::multiaddr::Protocol::P2p(status.peer_id);
    let at: Vec<Multiaddr> = status.listen_addrs.into_iter().map(|a| a.with(p2p.clone())).collect();
    let mut config = NetworkConfig::default();
    (config.mdns, config.rendezvous_servers) = (false, at);
    let bot = builder(&dirs[1], &clock, config.clone()).spawn().await.unwrap();
    let user = builder(&dirs[2], &clock, config).spawn().await.unwrap();

    let serving = {
        let bot = bot.clone();
        tokio::spawn(async move { veil_echo_bot::serve(&bot, Some(1)).await })
    };
    let mut events = user.events();
    user.send_request(&bot.share_link().await.unwrap().uri, Some("user")).await.unwrap();
    let group = timeout(WAIT, async {
        loop {
            if let Ok(NodeEvent::ContactAccepted { group: Some(group), .. }) = events.recv().await {
                return group;
            }
        }
    })
    .await
    .expect("the bot accepted");
    user.send(&group, b"ping").await.unwrap();
    timeout(WAIT, serving).await.expect("the bot answered").unwrap().unwrap();
    let answer = timeout(WAIT, async {
        loop {
            let latest = user.history_before(&group, None, 8).await.unwrap();
            if let Some(m) = latest.into_iter().find(|m| !m.mine) {
                return m;
            }
            if let Err(e) = events.recv().await {
                panic!("the user's events ended: {e}");
            }
        }
    })
    .await
    .expect("the answer arrived");
    assert_eq!(answer.payload, b"echo: ping");
    for node in [user, bot, server] {
        node.shutdown().await.unwrap();
    }
}
