//! A connection that stops carrying anything (a partition, a peer gone
//! without a word, a NAT mapping lost) is given up once a ping on it goes
//! unanswered, instead of being kept until TCP notices, hours later; the
//! next send dials anew.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use veil_testkit::network::*;
use veil_transports::{Policy, Tcp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_stops_answering_is_closed_and_the_next_send_dials_anew() {
    let mut config = config();
    config.request_timeout = Duration::from_secs(1);
    config.ping_interval = Some(Duration::from_millis(200));
    let mut a = spawn_with(Policy::Direct, vec![Arc::new(Tcp::new())], config);
    let mut b = spawn(Policy::Direct, vec![Arc::new(Tcp::new())]);
    let b_addr = b.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    let proxy = Proxy::to(socket_of(&b_addr)).await;
    let through_proxy = ma(&format!("/ip4/127.0.0.1/tcp/{}", proxy.addr.port()));
    assert_eq!(a.handle.dial(through_proxy).await.unwrap(), b.peer);
    a.handle.send_frame(b.peer, frame("before", 0)).await.unwrap();
    assert_eq!(recv_frames(&mut b.events, 1).await, vec![(a.peer, frame("before", 0))]);

    // The path goes silent: the frame is not acknowledged, the next ping is
    // not answered, and A closes the connection.
    proxy.freeze(true);
    assert!(a.handle.send_frame(b.peer, frame("lost", 1)).await.is_err(), "nothing acknowledged it");
    wait_disconnected(&mut a.events, b.peer).await;

    // B is reachable at the address it told A (identify): the next send
    // dials it there.
    a.handle.send_frame(b.peer, frame("after", 2)).await.unwrap();
    let got = recv_frames(&mut b.events, 1).await;
    assert_eq!(got, vec![(a.peer, frame("after", 2))]);
}
