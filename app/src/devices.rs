//! `veil device …` and `veil init --link`: linking a new device to the
//! account. The first device's side goes through its daemon; the new
//! device's runs offline, before the home holds any node.

use std::{io::Read, path::Path};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use tokio_stream::StreamExt;
use veil_actors::{
    crypto::device_link::ShortCode,
    proto::link::parse_device_offer,
    storage::{Store, StoreOptions},
};

use crate::{
    api::{self, device_link_event::Kind},
    client::Client,
    commands::ApiError,
    config::{self, Overrides, Settings},
    daemon,
    output::Out,
    qr,
};

/// Where the new device runs the network for the handshake, inside its
/// home, removed afterwards: a throwaway node whose account is never used.
const VEHICLE_DIR: &str = ".device-join";

/// One line the user types (a code), read off the async threads.
async fn typed_line(prompt: &str, out: Out) -> Result<String> {
    if !out.json {
        use std::io::Write;
        let mut stderr = std::io::stderr().lock();
        write!(stderr, "{prompt}")?;
        stderr.flush()?;
    }
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::stdin().lock().take(256), &mut line)
            .context("cannot read the code")?;
        if line.is_empty() {
            bail!("no code was typed (standard input is closed)");
        }
        Ok(line.trim().to_owned())
    })
    .await?
}

/// `veil device link`: shows an offer, asks for the new device's code,
/// and waits until the new device holds the account.
pub(crate) async fn link(c: &mut Client, lifetime: Option<u64>, out: Out) -> Result<()> {
    let lifetime_seconds =
        u32::try_from(lifetime.unwrap_or(0)).map_err(|_| anyhow!("an offer lives an hour at most"))?;
    let mut events =
        c.link_device(api::LinkDeviceRequest { lifetime_seconds }).await.map_err(ApiError::from)?.into_inner();
    let mut offer_id = None;
    while let Some(event) = events.next().await {
        match event.map_err(ApiError::from)?.kind {
            Some(Kind::Offer(o)) => {
                offer_id = Some(o.offer);
                let drawn = qr::render(&o.qr)?;
                let v = json!({ "offer": o.offer, "uri": o.uri, "qr": o.qr, "expires_at": o.expires_at });
                out.emit(&v, || {
                    format!(
                        "{drawn}\n{}\nOn the new device: `veil init --link OFFER` (or scan the code).\n\
                         This offer is a key to your account until it is used or expires: show it to no one else.",
                        o.uri
                    )
                })?;
            }
            Some(Kind::Code(code)) => {
                out.emit(&json!({ "code": code.code }), || {
                    format!("A device answered. This device shows the code {}.", code.code)
                })?;
                let typed = typed_line("Type the code the new device shows: ", out).await?;
                let offer = offer_id.ok_or_else(|| anyhow!("the daemon sent a code before the offer"))?;
                c.confirm_device(api::ConfirmDeviceRequest { offer, code: typed }).await.map_err(ApiError::from)?;
                out.emit(&json!({ "confirmed": true }), || "Confirmed; sending the account…".to_owned())?;
            }
            Some(Kind::Linked(device)) => {
                return out.emit(&json!({ "linked": device }), || {
                    format!("Linked: device {} is now a device of this account.", crate::output::short(&device))
                });
            }
            Some(Kind::Closed(reason)) => bail!("the offer is closed: {reason}"),
            None => {}
        }
    }
    bail!("the daemon ended the offer's stream")
}

/// `veil device list`.
pub(crate) async fn list(c: &mut Client, out: Out) -> Result<()> {
    let devices = c.list_devices(api::ListDevicesRequest {}).await.map_err(ApiError::from)?.into_inner().devices;
    let v = json!({ "devices": devices.iter().map(|d| json!({
        "device": d.device, "this_device": d.this_device, "added_at": d.added_at, "name": d.name,
        "removed_at": (d.removed_at != 0).then_some(d.removed_at),
    })).collect::<Vec<_>>() });
    out.emit(&v, || {
        devices
            .iter()
            .map(|d| {
                let note = match (d.this_device, d.removed_at != 0) {
                    (true, true) => "  (this device, removed by another)",
                    (true, false) => "  (this device)",
                    (false, true) => "  (removed)",
                    (false, false) => "",
                };
                format!("{}{note}", d.device)
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// `veil device remove ID`.
pub(crate) async fn remove(c: &mut Client, device: &str, out: Out) -> Result<()> {
    let removed = c
        .remove_device(api::RemoveDeviceRequest { device: device.to_owned() })
        .await
        .map_err(ApiError::from)?
        .into_inner();
    let v = json!({ "removed": removed.device, "groups_renewed": removed.groups_renewed });
    out.emit(&v, || {
        format!(
            "Removed device {}: {} groups (1:1s included) moved to new keys it does not get.",
            crate::output::short(&removed.device),
            removed.groups_renewed
        )
    })
}

/// `veil device join OFFER` and `veil init --link OFFER`: makes `home` a
/// new device of the offer's account.
pub(crate) async fn join(home: &Path, offer: &str, out: Out) -> Result<()> {
    if crate::client::connect(&config::socket_path(home)).await.is_ok() {
        bail!("a daemon runs on {}: join from a home of its own", home.display());
    }
    let (db, key) = (home.join("veil.db"), home.join("storage.key"));
    if db.exists() {
        bail!("{} already holds an account: join into a new home", home.display());
    }
    let offer = parse_device_offer(offer.trim())
        .map_err(|e| ApiError { code: tonic::Code::InvalidArgument, message: format!("not a device offer: {e}") })?;
    config::create_home(home)?;
    config::write_default_config(home)?;
    let mut settings = Settings::load(home, &Overrides::default())?;
    settings.serve = config::Roles::default();
    settings.ble.enabled = false;
    let vehicle = home.join(VEHICLE_DIR);
    let _ = std::fs::remove_dir_all(&vehicle);
    let node = daemon::start_node(&vehicle, &settings).await?;
    let joined = async {
        let join = node.join_device(&offer).await.context("cannot reach the device that shows the offer")?;
        let code = join.code();
        out.emit(&json!({ "code": code.to_string() }), || {
            format!("This device shows the code {code}. Type it on the other device.")
        })?;
        let typed: ShortCode = typed_line("Type the code the other device shows: ", out)
            .await?
            .parse()
            .map_err(|_| anyhow!("a code is six digits"))?;
        let store = join.complete(typed, &db, &key, StoreOptions::default()).await?;
        Ok::<Store, anyhow::Error>(store)
    }
    .await;
    if let Err(e) = node.shutdown().await {
        tracing::warn!(error = %e, "stopping the node that carried the link");
    }
    let _ = std::fs::remove_dir_all(&vehicle);
    let store = joined?;
    let account = store.account().await?.map(|a| hex::encode(a.signing.to_bytes())).unwrap_or_default();
    store.close().await?;
    let v = json!({ "home": home.display().to_string(), "account": account });
    out.emit(&v, || format!("This home is now a device of account {account}; start it with `veil daemon`."))
}
