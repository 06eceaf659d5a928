//! Every repository, exercised through the public API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{group_fixture, temp_store};
use veil_crypto::{AccountKeys, Identity, OsEntropy, RendezvousSeed, time::UnixTime};
use veil_storage::{ContactState, GroupKind, LinkLimits, Store};

#[tokio::test]
async fn identity_round_trip_and_only_once() {
    let t = temp_store().await;
    let keys = t.store.key_access().unwrap();
    assert!(t.store.load_identity(&keys).await.unwrap().is_none());
    assert!(t.store.account().await.unwrap().is_none());
    let id = Identity::generate(&mut OsEntropy).unwrap();
    t.store.save_identity(&id).await.unwrap();
    assert!(t.store.save_identity(&id).await.is_err());
    let back = t.store.load_identity(&keys).await.unwrap().unwrap();
    assert_eq!(t.store.account().await.unwrap(), Some(id.account.public()));
    assert_eq!(back.account.public(), id.account.public());
    assert_eq!(back.device.verify_key(), id.device.verify_key());
    assert_eq!(back.alias.to_seed(), id.alias.to_seed());
    let other = Identity::generate(&mut OsEntropy).unwrap().device;
    let other_agreement = veil_crypto::epoch::device_agreement_key(&other).public();
    let other = other.verify_key();
    t.store.add_device(&other, &other_agreement, Some("laptop")).await.unwrap();
    let devices = t.store.devices().await.unwrap();
    assert_eq!(devices.len(), 2);
    let mine = devices.iter().find(|d| d.is_this_device).unwrap();
    assert_eq!(mine.agreement, Some(veil_crypto::epoch::device_agreement_key(&id.device).public()));
    assert!(devices.iter().any(|d| d.device == other
        && d.name.as_deref() == Some("laptop")
        && d.agreement == Some(other_agreement)
        && d.removed_at.is_none()));

    // Removing: once, never this device, and a later listing keeps it removed.
    assert!(t.store.remove_device(&id.device.verify_key()).await.is_err());
    assert!(t.store.remove_device(&other).await.unwrap());
    assert!(!t.store.remove_device(&other).await.unwrap());
    t.store.add_device(&other, &other_agreement, None).await.unwrap();
    let removed = t.store.devices().await.unwrap().into_iter().find(|d| d.device == other).unwrap();
    assert!(removed.removed_at.is_some());
    assert_eq!(removed.name.as_deref(), Some("laptop"));
    assert!(t.store.devices().await.unwrap().iter().any(|d| d.is_this_device && d.removed_at.is_none()));
    assert!(t.store.mark_this_device_removed().await.unwrap());
    assert!(!t.store.mark_this_device_removed().await.unwrap());
}

/// A store from before schema 12 lacks this device's agreement key; it is
/// filled in from the sealed device secret when the store opens.
#[tokio::test]
async fn this_devices_agreement_key_is_filled_in_on_open() {
    use sqlx::Connection;
    let t = temp_store().await;
    let id = Identity::generate(&mut OsEntropy).unwrap();
    t.store.save_identity(&id).await.unwrap();
    t.store.close().await.unwrap();
    let url = format!("sqlite://{}", t.db_path().display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE devices SET agreement_public = NULL").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let store = Store::open(&t.db_path(), &t.key(), common::options(&t.clock)).await.unwrap();
    let devices = store.devices().await.unwrap();
    assert_eq!(devices[0].agreement, Some(veil_crypto::epoch::device_agreement_key(&id.device).public()));
}

#[tokio::test]
async fn link_reset_disable_and_history() {
    let t = temp_store().await;
    assert!(t.store.link().await.unwrap().is_none());
    assert!(t.store.set_link_enabled(false).await.is_err());
    let first = RendezvousSeed::from_bytes([1; 32]);
    t.store.reset_link(&first).await.unwrap();
    let link = t.store.link().await.unwrap().unwrap();
    assert_eq!((link.seed.clone(), link.enabled), (first.clone(), true));
    t.store.set_link_enabled(false).await.unwrap();
    assert!(!t.store.link().await.unwrap().unwrap().enabled);
    t.clock.advance(60);
    let second = RendezvousSeed::from_bytes([2; 32]);
    t.store.reset_link(&second).await.unwrap();
    let link = t.store.link().await.unwrap().unwrap();
    assert_eq!(link.seed, second);
    assert!(!link.enabled, "a reset does not re-enable a disabled link");
    let history = t.store.link_history().await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].seed, first);
    assert_eq!(history[0].retired_at, UnixTime(1_800_000_060));
}

#[tokio::test]
async fn link_limits_expire_and_count_down_uses() {
    let t = temp_store().await;
    let now = UnixTime(1_800_000_000);
    t.store.reset_link(&RendezvousSeed::from_bytes([1; 32])).await.unwrap();
    let unlimited = t.store.link().await.unwrap().unwrap();
    assert_eq!(unlimited.limits, LinkLimits::default());
    assert_eq!(t.store.use_link().await.unwrap(), None, "no limit, nothing counted");
    assert!(t.store.link().await.unwrap().unwrap().answers_at(UnixTime(u64::MAX - 1)));

    let limits = LinkLimits { expires_at: Some(UnixTime(now.0 + 3600)), uses: Some(2) };
    t.store.reset_link_with(&RendezvousSeed::from_bytes([2; 32]), limits).await.unwrap();
    let link = t.store.link().await.unwrap().unwrap();
    assert_eq!(link.limits, limits);
    assert!(link.answers_at(now));
    assert!(!link.answers_at(UnixTime(now.0 + 3600)), "expired at its time");
    assert_eq!(t.store.use_link().await.unwrap(), Some(1));
    assert_eq!(t.store.use_link().await.unwrap(), Some(0));
    assert_eq!(t.store.use_link().await.unwrap(), Some(0), "a used-up link stays used up");
    assert!(!t.store.link().await.unwrap().unwrap().answers_at(now));
    // A reset without limits makes a fresh, unlimited link.
    t.store.reset_link(&RendezvousSeed::from_bytes([3; 32])).await.unwrap();
    assert!(t.store.link().await.unwrap().unwrap().answers_at(now));
}

#[tokio::test]
async fn contacts_move_through_states() {
    let t = temp_store().await;
    let them = AccountKeys::generate(&mut OsEntropy).unwrap().public();
    let seed = RendezvousSeed::from_bytes([7; 32]);
    t.store.upsert_contact(&them, Some("Bob"), Some(&seed), ContactState::OutgoingEnqueued).await.unwrap();
    t.store.set_contact_state(&them.signing, ContactState::OutgoingSent, None).await.unwrap();
    let (secret, _, device) = group_fixture(1);
    let gid = t.store.insert_group(GroupKind::Contact, None, &secret, &device).await.unwrap();
    t.store.set_contact_state(&them.signing, ContactState::Accepted, Some(&gid)).await.unwrap();
    let c = t.store.contact(&them.signing).await.unwrap().unwrap();
    assert_eq!(
        (c.state, c.group, c.display_name.as_deref(), c.seed),
        (ContactState::Accepted, Some(gid), Some("Bob"), Some(seed))
    );
    // An upsert without a name or seed keeps the known ones.
    t.store.upsert_contact(&them, None, None, ContactState::Blocked).await.unwrap();
    let c = t.store.contact(&them.signing).await.unwrap().unwrap();
    assert_eq!((c.state, c.display_name.as_deref()), (ContactState::Blocked, Some("Bob")));
    // A nickname is this user's: set, kept by upserts, cleared.
    assert_eq!(c.nickname, None);
    t.store.set_contact_nickname(&them.signing, Some("Bobby (work)")).await.unwrap();
    t.store.upsert_contact(&them, Some("Robert"), None, ContactState::Accepted).await.unwrap();
    let c = t.store.contact(&them.signing).await.unwrap().unwrap();
    assert_eq!((c.display_name.as_deref(), c.nickname.as_deref()), (Some("Robert"), Some("Bobby (work)")));
    t.store.set_contact_nickname(&them.signing, None).await.unwrap();
    assert_eq!(t.store.contact(&them.signing).await.unwrap().unwrap().nickname, None);
    t.store.upsert_contact(&them, None, None, ContactState::Blocked).await.unwrap();
    assert_eq!(t.store.contacts(Some(ContactState::Blocked)).await.unwrap().len(), 1);
    assert_eq!(t.store.contacts(Some(ContactState::Accepted)).await.unwrap().len(), 0);
    assert_eq!(t.store.contacts(None).await.unwrap().len(), 1);
    let stranger = AccountKeys::generate(&mut OsEntropy).unwrap().public();
    assert!(t.store.set_contact_state(&stranger.signing, ContactState::Accepted, None).await.is_err());
    assert!(t.store.set_contact_nickname(&stranger.signing, Some("x")).await.is_err());
}

#[tokio::test]
async fn private_keys_are_read_with_the_store_key_access_only_handed_out_once() {
    let (t, other) = (temp_store().await, temp_store().await);
    let keys = t.store.key_access().unwrap();
    assert!(matches!(t.store.key_access(), Err(veil_storage::Error::KeyAccessTaken)));
    let (secret, _, device) = group_fixture(1);
    t.store.insert_group(GroupKind::Contact, None, &secret, &device).await.unwrap();
    // Another store's access opens nothing here.
    let foreign = other.store.key_access().unwrap();
    assert!(matches!(t.store.group_device_keys(&foreign).await, Err(veil_storage::Error::Invalid { .. })));
    assert!(matches!(t.store.load_identity(&foreign).await, Err(veil_storage::Error::Invalid { .. })));
    assert_eq!(t.store.group_device_keys(&keys).await.unwrap().len(), 1);
}

#[tokio::test]
async fn groups_round_trip() {
    let t = temp_store().await;
    let (secret, keys, device) = group_fixture(3);
    let id = t.store.insert_group(GroupKind::MultiMember, Some("club"), &secret, &device).await.unwrap();
    assert_eq!(id, keys.id);
    // Idempotent.
    assert_eq!(t.store.insert_group(GroupKind::MultiMember, Some("other"), &secret, &device).await.unwrap(), id);
    let g = t.store.group(&id).await.unwrap().unwrap();
    assert_eq!((g.kind, g.name.as_deref(), g.secret), (GroupKind::MultiMember, Some("club"), secret));
    let device_keys = t.store.group_device_keys(&t.store.key_access().unwrap()).await.unwrap();
    assert_eq!(
        device_keys.iter().map(|d| (d.group, d.kind, d.key.verify_key())).collect::<Vec<_>>(),
        [(id, GroupKind::MultiMember, device.verify_key())]
    );
    assert_eq!(t.store.groups().await.unwrap().len(), 1);
    // Names only, and only of the groups that have one.
    let (unnamed_secret, _, unnamed_device) = group_fixture(5);
    t.store.insert_group(GroupKind::Contact, None, &unnamed_secret, &unnamed_device).await.unwrap();
    assert_eq!(t.store.group_names().await.unwrap(), vec![(id, "club".to_owned())]);
}

#[tokio::test]
async fn group_epochs_are_kept_once_in_order() {
    let t = temp_store().await;
    let (secret, _, device) = group_fixture(4);
    let id = t.store.insert_group(GroupKind::MultiMember, None, &secret, &device).await.unwrap();
    let (e1, e2) = (veil_crypto::EpochSecret::from_bytes([1; 32]), veil_crypto::EpochSecret::from_bytes([2; 32]));
    assert!(t.store.epochs(&id).await.unwrap().is_empty());
    assert!(t.store.add_epoch(&id, &e2).await.unwrap());
    assert!(t.store.add_epoch(&id, &e1).await.unwrap());
    assert!(!t.store.add_epoch(&id, &e2).await.unwrap());
    assert_eq!(t.store.epochs(&id).await.unwrap(), vec![e2.clone(), e1.clone()]);
    assert!(t.store.add_epoch(&veil_crypto::GroupId([9; 32]), &e1).await.is_err());
}

#[tokio::test]
async fn a_joined_group_comes_with_its_epochs_and_joining_again_changes_nothing() {
    let t = temp_store().await;
    let (secret, keys, device) = group_fixture(6);
    let epochs = [veil_crypto::EpochSecret::from_bytes([3; 32]), veil_crypto::EpochSecret::from_bytes([4; 32])];
    let id = t.store.join_group(Some("joined"), &secret, &device, &epochs).await.unwrap();
    assert_eq!(id, keys.id);
    let g = t.store.group(&id).await.unwrap().unwrap();
    assert_eq!((g.kind, g.name.as_deref()), (GroupKind::MultiMember, Some("joined")));
    assert_eq!(t.store.epochs(&id).await.unwrap(), epochs.to_vec());
    // Joining again (the same invitation, or one naming another epoch too)
    // keeps the first record and adds only what is new.
    let more = [epochs[1].clone(), veil_crypto::EpochSecret::from_bytes([5; 32])];
    assert_eq!(t.store.join_group(Some("renamed"), &secret, &device, &more).await.unwrap(), id);
    assert_eq!(t.store.group(&id).await.unwrap().unwrap().name.as_deref(), Some("joined"));
    assert_eq!(t.store.epochs(&id).await.unwrap(), vec![epochs[0].clone(), epochs[1].clone(), more[1].clone()]);
}

#[tokio::test]
async fn settings_round_trip() {
    let t = temp_store().await;
    assert_eq!(t.store.setting("policy").await.unwrap(), None);
    t.store.set_setting("policy", b"relayed").await.unwrap();
    t.store.set_setting("policy", b"anonymous").await.unwrap();
    assert_eq!(t.store.setting("policy").await.unwrap().as_deref(), Some(&b"anonymous"[..]));
    assert!(t.store.remove_setting("policy").await.unwrap());
    assert!(!t.store.remove_setting("policy").await.unwrap());
}

#[tokio::test]
async fn a_second_store_on_the_same_database_is_refused() {
    let t = temp_store().await;
    let err = Store::open(&t.db_path(), &t.key(), common::options(&t.clock)).await.unwrap_err();
    assert!(matches!(err, veil_storage::Error::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("in use by another veil process"));
    let path = t.db_path();
    let key = t.key();
    let clock = t.clock.clone();
    t.store.close().await.unwrap();
    // Once closed, it opens again.
    Store::open(&path, &key, common::options(&clock)).await.unwrap();
}
