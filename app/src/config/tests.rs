#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn a_home_open_to_others_is_made_private_and_a_new_one_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let fresh = dir.path().join("new");
    create_home(&fresh).unwrap();
    assert_eq!(mode(&fresh), 0o700);
    assert!(write_default_config(&fresh).unwrap());
    assert_eq!(mode(&fresh.join(CONFIG_FILE)), 0o600);
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    create_home(&open).unwrap();
    assert_eq!(mode(&open), 0o700);
}

#[test]
fn flags_beat_the_file_and_the_file_beats_defaults() {
    let file = ConfigFile::parse(
        r#"
        name = "Alice"
        listen = ["/ip4/127.0.0.1/tcp/4001"]
        policy = "offline"
        serve = ["rendezvous"]
        mdns = false
        sync_interval_ms = 200
        "#,
    )
    .unwrap();
    let s = Settings::resolve(&file, &Overrides::default()).unwrap();
    assert_eq!(s.name.as_deref(), Some("Alice"));
    assert_eq!(s.listen, vec!["/ip4/127.0.0.1/tcp/4001".parse::<Multiaddr>().unwrap()]);
    assert_eq!(s.policy, Policy::Offline);
    assert!(s.serve.rendezvous && !s.serve.relay && !s.mdns);
    assert!(!s.rotate_peer_id, "a server keeps its peer id unless told otherwise");
    assert_eq!(s.sync_interval, Some(Duration::from_millis(200)));

    let over = Overrides {
        listen: Some(vec!["/ip4/127.0.0.1/tcp/0".into()]),
        policy: Some("direct".into()),
        mdns: Some(true),
        ..Overrides::default()
    };
    let s = Settings::resolve(&file, &over).unwrap();
    assert_eq!(s.listen, vec!["/ip4/127.0.0.1/tcp/0".parse::<Multiaddr>().unwrap()]);
    assert_eq!(s.policy, Policy::Direct);
    assert!(s.mdns);

    let d = Settings::resolve(&ConfigFile::default(), &Overrides::default()).unwrap();
    assert_eq!(d.listen.len(), 2);
    assert_eq!(d.policy, Policy::Direct);
    assert!(d.rotate_peer_id);

    let relayed = ConfigFile::parse(
        r#"
        relays = ["/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"]
        serve = ["relay", "dht"]
        rotate_peer_id = true
        relay_max_circuits = 3
        "#,
    )
    .unwrap();
    let s = Settings::resolve(&relayed, &Overrides::default()).unwrap();
    let config = s.network_config();
    assert_eq!(config.relays.len(), 1);
    assert!(config.relay_server && config.kad && s.rotate_peer_id);
    assert_eq!(config.relay_max_circuits, 3);
}

#[test]
fn bad_settings_are_refused_with_the_reason() {
    for (text, needle) in [
        ("policy = \"loud\"", "unknown policy"),
        ("listen = [\"not an address\"]", "invalid listen address"),
        ("serve = [\"dns\"]", "unknown role"),
        ("colour = \"blue\"", "unknown field"),
        ("relays = [\"/ip4/10.0.0.1/tcp/1\"]", "must end in /p2p/"),
        ("name = \"a\\nb\"", "invalid name"),
        ("rendezvous_servers = [\"/onion3/notanonion:443\"]", "invalid rendezvous server address"),
        ("[tor]\nauthorities = [\"00\"]", "needs both authorities and fallbacks"),
        (
            "[tor]\nauthorities = [\"00\"]\nfallbacks = [{ rsa_identity = \"a\", ed_identity = \"b\", orport = \"nowhere\" }]",
            "invalid orport",
        ),
        ("[tor]\ncolour = 1", "unknown field"),
        ("[ble]\nadapter = \"../hci0\"", "adapter must be"),
        ("[ble]\nadapter = \"\"", "adapter must be"),
        ("[ble]\nradio = 1", "unknown field"),
    ] {
        let err = ConfigFile::parse(text).and_then(|f| Settings::resolve(&f, &Overrides::default()));
        let msg = format!("{:#}", err.unwrap_err());
        assert!(msg.contains(needle), "{text}: {msg}");
    }
}

#[test]
fn tor_is_on_under_anonymous_unless_told_and_a_private_network_is_read() {
    let anonymous = ConfigFile::parse("policy = \"anonymous\"").unwrap();
    let s = Settings::resolve(&anonymous, &Overrides::default()).unwrap();
    assert!(s.tor.enabled && s.tor.network.is_none(), "the public network by default");
    assert!(!Settings::resolve(&ConfigFile::default(), &Overrides::default()).unwrap().tor.enabled);
    let private = ConfigFile::parse(
        r#"
        policy = "anonymous"
        [tor]
        enabled = false
        port = 9000
        loopback = true
        authorities = ["0000000000000000000000000000000000000001"]
        fallbacks = [{ rsa_identity = "0000000000000000000000000000000000000002", ed_identity = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", orport = "127.0.0.1:5000" }]
        "#,
    )
    .unwrap();
    let s = Settings::resolve(&private, &Overrides::default()).unwrap();
    assert!(!s.tor.enabled, "told not to");
    let config = s.tor.config(Path::new("/home/x"));
    assert_eq!((config.port, config.cache_dir.clone()), (9000, PathBuf::from("/home/x/tor/cache")));
    let network = config.network.unwrap();
    assert!(network.loopback && network.fallbacks[0].orport.port() == 5000);
}

#[test]
fn ble_is_on_under_offline_unless_told_and_on_the_adapter_named() {
    let offline = ConfigFile::parse("policy = \"offline\"").unwrap();
    assert_eq!(
        Settings::resolve(&offline, &Overrides::default()).unwrap().ble,
        BleSettings { enabled: true, adapter: None }
    );
    assert!(!Settings::resolve(&ConfigFile::default(), &Overrides::default()).unwrap().ble.enabled);
    let told = ConfigFile::parse("policy = \"offline\"\n[ble]\nenabled = false\nadapter = \"hci1\"").unwrap();
    let s = Settings::resolve(&told, &Overrides::default()).unwrap();
    assert_eq!(s.ble, BleSettings { enabled: false, adapter: Some("hci1".into()) });
}

#[test]
fn the_default_config_parses_and_a_big_one_is_refused() {
    assert_eq!(ConfigFile::parse(DEFAULT_CONFIG).unwrap(), ConfigFile::default());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CONFIG_FILE), "#".repeat(100_000)).unwrap();
    let msg = ConfigFile::load(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("larger than"), "{msg}");
}
