//! BLE in the daemon: the node's `BleTransport` actor on BlueZ (the adapter
//! of `[ble] adapter`, else the default one), enabled at start under the
//! `offline` policy or by `[ble] enabled`, and by `veil transport attach
//! ble`. A machine without Bluetooth (or without a D-Bus system bus) is
//! normal: the daemon runs and `veil status` says why BLE is unavailable.

use std::{sync::Arc, time::Duration};

use tonic::Status;
use veil_actors::ble::{air::Bluez, radio::RadioState};
use veil_actors::{
    Node, NodeBuilder,
    ble::{BleStatus, BleTiming},
};

use super::service::node_error;
use crate::config::BleSettings;

/// How long `transport attach ble` / `detach ble` wait for the plug-in.
const SETTLE: Duration = Duration::from_secs(10);
/// How often they look while waiting.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Gives the node a radio.
pub(crate) fn with_radio(builder: NodeBuilder, settings: &BleSettings) -> NodeBuilder {
    builder.ble(Arc::new(Bluez::new(settings.adapter.clone())), BleTiming::default())
}

/// The line `veil status` shows.
pub(crate) async fn line(node: &Node) -> Result<String, Status> {
    Ok(node.ble_status().await.map_err(node_error)?.describe())
}

/// Enables BLE and waits until the plug-in listens: only with a radio
/// ready, else the error says why BLE is unavailable.
pub(crate) async fn attach(node: &Node) -> Result<(), Status> {
    let status = node.ble_status().await.map_err(node_error)?;
    if !matches!(status.radio, Some(RadioState::Ready { .. })) {
        return Err(Status::failed_precondition(status.describe()));
    }
    node.set_ble(true).await.map_err(node_error)?;
    match settle(node, |s| s.attached).await? {
        true => Ok(()),
        false => Err(Status::failed_precondition(format!(
            "BLE unavailable: no L2CAP channel to listen on ({}); still trying",
            node.ble_status().await.map_err(node_error)?.describe()
        ))),
    }
}

/// Disables BLE: off the air, the plug-in detached.
pub(crate) async fn detach(node: &Node) -> Result<(), Status> {
    node.set_ble(false).await.map_err(node_error)?;
    match settle(node, |s| !s.attached && !s.advertising).await? {
        true => Ok(()),
        false => Err(Status::deadline_exceeded("BLE is still being taken down")),
    }
}

/// Waits (at most [`SETTLE`]) until `done` holds of BLE's status.
async fn settle(node: &Node, done: impl Fn(&BleStatus) -> bool) -> Result<bool, Status> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if done(&node.ble_status().await.map_err(node_error)?) {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}
