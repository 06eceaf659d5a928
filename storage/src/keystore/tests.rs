use super::*;

const FAST: KdfParams = KdfParams::FAST_INSECURE_FOR_TESTS;

fn passphrase(s: &str) -> KeySource {
    KeySource::Passphrase(Zeroizing::new(s.to_owned()))
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Both keys seal and open each other's blobs.
fn same_key(a: &StorageKey, b: &StorageKey) -> bool {
    let sealed = a.seal(b"test", b"same key?").unwrap();
    b.open(b"test", &sealed).is_ok()
}

#[test]
fn passphrase_round_trip() {
    let source = passphrase("correct horse battery staple");
    let (key, record) = source.create(FAST).unwrap();
    assert_eq!(record.kind, KeyKind::Passphrase);
    assert_eq!(record.params, Some(FAST));
    assert!(record.salt.is_some());
    assert_eq!(record.verifier.len(), VERIFIER_LEN);
    let again = passphrase("correct horse battery staple").unlock(&record).unwrap();
    assert_eq!(key.0, again.0);
}

#[test]
fn key_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storage.key");
    let source = KeySource::KeyFile(path.clone());
    let (key, record) = source.create(FAST).unwrap();
    assert_eq!((record.kind, record.salt, record.params), (KeyKind::KeyFile, None, None));
    assert_eq!(fs::read(&path).unwrap(), key.0);
    let again = KeySource::KeyFile(path).unlock(&record).unwrap();
    assert_eq!(key.0, again.0);
}

#[test]
fn key_file_mode_is_exactly_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storage.key");
    KeySource::KeyFile(path.clone()).create(FAST).unwrap();
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(fs::metadata(&path).unwrap().len(), 32);
}

#[test]
fn production_parameters_work() {
    KdfParams::DEFAULT.validate().unwrap();
    assert_eq!(KdfParams::default(), KdfParams::DEFAULT);
    let (key, record) = passphrase("a production passphrase").create(KdfParams::DEFAULT).unwrap();
    assert_eq!(record.params, Some(KdfParams { m_cost_kib: 65536, t_cost: 3, p_cost: 1 }));
    let again = passphrase("a production passphrase").unlock(&record).unwrap();
    assert!(same_key(&key, &again));
}

#[test]
fn wrong_passphrase_is_refused() {
    let (_, record) = passphrase("right").create(FAST).unwrap();
    assert!(matches!(passphrase("wrong").unlock(&record), Err(KeystoreError::WrongPassphrase)));
    assert!(matches!(passphrase("Right").unlock(&record), Err(KeystoreError::WrongPassphrase)));
    assert!(matches!(passphrase("").unlock(&record), Err(KeystoreError::WrongPassphrase)));
    assert_eq!(KeystoreError::WrongPassphrase.to_string(), "wrong passphrase");
}

#[test]
fn empty_passphrase_is_refused_at_create() {
    assert!(matches!(passphrase("").create(FAST), Err(KeystoreError::InvalidParams(_))));
}

#[test]
fn missing_key_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storage.key");
    let (_, record) = KeySource::KeyFile(path.clone()).create(FAST).unwrap();
    fs::remove_file(&path).unwrap();
    let err = KeySource::KeyFile(path.clone()).unlock(&record).unwrap_err();
    assert!(matches!(&err, KeystoreError::MissingKeyFile { path: p } if *p == path), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains("missing"), "{msg}");
}

#[test]
fn another_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.key"), dir.path().join("b.key"));
    let (_, record_a) = KeySource::KeyFile(a).create(FAST).unwrap();
    KeySource::KeyFile(b.clone()).create(FAST).unwrap();
    let err = KeySource::KeyFile(b.clone()).unlock(&record_a).unwrap_err();
    assert!(matches!(&err, KeystoreError::WrongKeyFile { path } if *path == b), "{err:?}");
}

#[test]
fn key_file_accessible_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storage.key");
    let (_, record) = KeySource::KeyFile(path.clone()).create(FAST).unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660, 0o602, 0o610] {
        chmod(&path, mode);
        let err = KeySource::KeyFile(path.clone()).unlock(&record).unwrap_err();
        assert!(matches!(err, KeystoreError::KeyFileUnsafe { mode: m, .. } if m == mode), "{mode:o}: {err:?}");
    }
    chmod(&path, 0o644);
    let msg = KeySource::KeyFile(path.clone()).unlock(&record).unwrap_err().to_string();
    assert!(msg.contains("0644") && msg.contains("chmod 600"), "{msg}");
    // Stricter than 0600 is fine.
    chmod(&path, 0o400);
    KeySource::KeyFile(path).unlock(&record).unwrap();
}

#[test]
fn creating_over_an_existing_key_file_is_refused_and_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storage.key");
    fs::write(&path, b"precious existing contents").unwrap();
    chmod(&path, 0o640);
    let err = KeySource::KeyFile(path.clone()).create(FAST).unwrap_err();
    assert!(matches!(&err, KeystoreError::KeyFileExists { path: p } if *p == path), "{err:?}");
    assert_eq!(fs::read(&path).unwrap(), b"precious existing contents");
    assert_eq!(mode_of(&path), 0o640);

    // The same for a key file made by create itself.
    let other = dir.path().join("other.key");
    let (key, _) = KeySource::KeyFile(other.clone()).create(FAST).unwrap();
    assert!(matches!(KeySource::KeyFile(other.clone()).create(FAST), Err(KeystoreError::KeyFileExists { .. })));
    assert_eq!(fs::read(&other).unwrap(), key.0);
}

#[test]
fn create_in_a_missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("storage.key");
    let err = KeySource::KeyFile(path.clone()).create(FAST).unwrap_err();
    assert!(matches!(&err, KeystoreError::Io { path: p, .. } if *p == path), "{err:?}");
}

#[test]
fn kind_mismatch_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storage.key");
    let (_, file_record) = KeySource::KeyFile(path.clone()).create(FAST).unwrap();
    let (_, pass_record) = passphrase("pass").create(FAST).unwrap();

    let err = passphrase("pass").unlock(&file_record).unwrap_err();
    assert!(
        matches!(err, KeystoreError::KindMismatch { stored: KeyKind::KeyFile, given: KeyKind::Passphrase }),
        "{err:?}"
    );
    assert!(err.to_string().contains("protected by a key file"), "{err}");

    let err = KeySource::KeyFile(path).unlock(&pass_record).unwrap_err();
    assert!(
        matches!(err, KeystoreError::KindMismatch { stored: KeyKind::Passphrase, given: KeyKind::KeyFile }),
        "{err:?}"
    );
    assert!(err.to_string().contains("give the passphrase"), "{err}");
}

#[test]
fn malformed_records_are_reported() {
    let (_, record) = passphrase("pass").create(FAST).unwrap();
    let unlock = |r: &KeystoreRecord| passphrase("pass").unlock(r);

    let no_salt = KeystoreRecord { salt: None, ..record.clone() };
    assert!(matches!(unlock(&no_salt), Err(KeystoreError::Malformed(_))));
    let no_params = KeystoreRecord { params: None, ..record.clone() };
    assert!(matches!(unlock(&no_params), Err(KeystoreError::Malformed(_))));
    let bad_params = KeystoreRecord { params: Some(KdfParams { t_cost: 0, ..FAST }), ..record.clone() };
    assert!(matches!(unlock(&bad_params), Err(KeystoreError::Malformed(_))));
    let huge_params = KeystoreRecord { params: Some(KdfParams { t_cost: u32::MAX, ..FAST }), ..record.clone() };
    assert!(matches!(unlock(&huge_params), Err(KeystoreError::Malformed(_))));
    let mut short = record.clone();
    short.verifier.pop();
    assert!(matches!(unlock(&short), Err(KeystoreError::Malformed(_))));
    let mut long = record.clone();
    long.verifier.push(0);
    assert!(matches!(unlock(&long), Err(KeystoreError::Malformed(_))));
    assert!(matches!(unlock(&KeystoreRecord { verifier: vec![], ..record }), Err(KeystoreError::Malformed(_))));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storage.key");
    let (_, file_record) = KeySource::KeyFile(path.clone()).create(FAST).unwrap();
    let with_salt = KeystoreRecord { salt: Some([0; 16]), ..file_record };
    assert!(matches!(KeySource::KeyFile(path).unlock(&with_salt), Err(KeystoreError::Malformed(_))));
}

#[test]
fn key_file_of_the_wrong_length_or_kind_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storage.key");
    let (_, record) = KeySource::KeyFile(path.clone()).create(FAST).unwrap();
    let original = fs::read(&path).unwrap();
    let too_long = [original.as_slice(), &[0]].concat();
    for contents in [&original[..31], &too_long[..], &[][..]] {
        fs::write(&path, contents).unwrap();
        let err = KeySource::KeyFile(path.clone()).unlock(&record).unwrap_err();
        assert!(matches!(err, KeystoreError::Malformed(_)), "{} bytes: {err:?}", contents.len());
    }
    fs::write(&path, &original).unwrap();
    KeySource::KeyFile(path).unlock(&record).unwrap();

    let subdir = dir.path().join("a-directory");
    fs::create_dir(&subdir).unwrap();
    chmod(&subdir, 0o700);
    assert!(matches!(KeySource::KeyFile(subdir).unlock(&record), Err(KeystoreError::Malformed(_))));
}

#[test]
fn kdf_params_validation() {
    FAST.validate().unwrap();
    KdfParams { m_cost_kib: 16, t_cost: 1, p_cost: 2 }.validate().unwrap();
    KdfParams { m_cost_kib: 4 * 1024 * 1024, t_cost: 100, p_cost: 64 }.validate().unwrap();
    for bad in [
        KdfParams { m_cost_kib: 7, ..FAST },
        KdfParams { m_cost_kib: 0, ..FAST },
        KdfParams { m_cost_kib: 15, t_cost: 1, p_cost: 2 },
        KdfParams { t_cost: 0, ..FAST },
        KdfParams { p_cost: 0, ..FAST },
        KdfParams { m_cost_kib: 4 * 1024 * 1024 + 1, ..FAST },
        KdfParams { m_cost_kib: u32::MAX, ..FAST },
        KdfParams { t_cost: 101, ..FAST },
        KdfParams { m_cost_kib: 65 * 8, p_cost: 65, ..FAST },
    ] {
        assert!(matches!(bad.validate(), Err(KeystoreError::InvalidParams(_))), "{bad:?}");
        assert!(matches!(passphrase("p").create(bad), Err(KeystoreError::InvalidParams(_))), "{bad:?}");
    }
}

#[test]
fn key_kind_text_round_trip() {
    for kind in [KeyKind::Passphrase, KeyKind::KeyFile] {
        assert_eq!(KeyKind::parse(kind.as_str()), Some(kind));
        assert_eq!(kind.to_string().parse::<KeyKind>().unwrap(), kind);
    }
    assert_eq!(KeyKind::Passphrase.as_str(), "passphrase");
    assert_eq!(KeyKind::KeyFile.as_str(), "key-file");
    assert_eq!(KeyKind::parse("keyfile"), None);
    assert_eq!(KeyKind::parse(""), None);
    assert_eq!(KeyKind::parse("Passphrase"), None);
    assert!(matches!("key_file".parse::<KeyKind>(), Err(KeystoreError::Malformed(_))));
}

#[test]
fn seal_open_round_trip() {
    let (key, _) = passphrase("pass").create(FAST).unwrap();
    for plaintext in [&b""[..], b"x", &[7u8; 1000]] {
        let sealed = key.seal(b"account/signing", plaintext).unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + plaintext.len() + TAG_LEN);
        assert_eq!(key.open(b"account/signing", &sealed).unwrap().as_slice(), plaintext);
    }
    let sealed = key.seal(b"account/signing", &[9u8; 32]).unwrap();
    assert_eq!(*key.open32(b"account/signing", &sealed).unwrap(), [9u8; 32]);
    let short = key.seal(b"account/signing", &[9u8; 31]).unwrap();
    assert!(matches!(key.open32(b"account/signing", &short), Err(KeystoreError::Malformed(_))));
    assert!(matches!(key.open32(b"account/agreement", &sealed), Err(KeystoreError::Crypto)));
}

#[test]
fn wrong_purpose_or_key_fails() {
    let (key, _) = passphrase("pass").create(FAST).unwrap();
    let (other, _) = passphrase("pass").create(FAST).unwrap();
    let sealed = key.seal(b"entry-payload/aa", b"secret").unwrap();
    assert!(matches!(key.open(b"entry-payload/ab", &sealed), Err(KeystoreError::Crypto)));
    assert!(matches!(key.open(b"", &sealed), Err(KeystoreError::Crypto)));
    assert!(matches!(other.open(b"entry-payload/aa", &sealed), Err(KeystoreError::Crypto)));
}

#[test]
fn every_byte_tamper_fails() {
    let (key, _) = passphrase("pass").create(FAST).unwrap();
    let sealed = key.seal(b"p", b"some secret data").unwrap();
    for i in 0..sealed.len() {
        for flip in [0x01, 0x80] {
            let mut tampered = sealed.clone();
            tampered[i] ^= flip;
            assert!(matches!(key.open(b"p", &tampered), Err(KeystoreError::Crypto)), "byte {i}");
        }
    }
}

#[test]
fn truncated_or_extended_fails() {
    let (key, _) = passphrase("pass").create(FAST).unwrap();
    let sealed = key.seal(b"p", b"some secret data").unwrap();
    for len in 0..sealed.len() {
        assert!(matches!(key.open(b"p", &sealed[..len]), Err(KeystoreError::Crypto)), "len {len}");
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(matches!(key.open(b"p", &longer), Err(KeystoreError::Crypto)));
}

#[test]
fn sealing_twice_differs() {
    let (key, _) = passphrase("pass").create(FAST).unwrap();
    let a = key.seal(b"p", b"same").unwrap();
    let b = key.seal(b"p", b"same").unwrap();
    assert_ne!(a, b);
    assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
}

#[test]
fn debug_output_is_redacted() {
    let secret = "hunter2-very-secret-passphrase";
    let source = passphrase(secret);
    let shown = format!("{source:?} {source:#?}");
    assert!(!shown.contains(secret) && !shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("<redacted>"));

    let (key, record) = source.create(FAST).unwrap();
    let shown = format!("{key:?} {key:#?}");
    assert_eq!(format!("{key:?}"), "StorageKey(<redacted>)");
    assert!(!shown.contains(&hex::encode(key.0)));
    assert!(!shown.contains(&format!("{:?}", key.0)));

    let record_shown = format!("{record:?}");
    assert!(!record_shown.contains(&format!("{:?}", key.0)) && !record_shown.contains(secret));

    let path = PathBuf::from("/some/dir/storage.key");
    assert!(format!("{:?}", KeySource::KeyFile(path)).contains("/some/dir/storage.key"));
}

#[test]
fn record_holds_no_key_material() {
    let (key1, record1) = passphrase("same passphrase").create(FAST).unwrap();
    let (key2, record2) = passphrase("same passphrase").create(FAST).unwrap();
    // A fresh salt each time, hence a different key.
    assert_ne!(record1.salt, record2.salt);
    assert_ne!(record1.salt, Some([0; 16]));
    assert!(!same_key(&key1, &key2));
    // The key appears nowhere in the record.
    let mut stored = record1.verifier.clone();
    stored.extend_from_slice(&record1.salt.unwrap());
    assert!(!stored.windows(8).any(|w| key1.0.windows(8).any(|k| k == w)));
    // The verifier opens only with the key.
    assert_eq!(key1.open(VERIFIER_PURPOSE, &record1.verifier).unwrap().as_slice(), VERIFIER_PLAINTEXT);
    assert!(key2.open(VERIFIER_PURPOSE, &record1.verifier).is_err());

    let dir = tempfile::tempdir().unwrap();
    let (k, r) = KeySource::KeyFile(dir.path().join("storage.key")).create(FAST).unwrap();
    assert_eq!((r.salt, r.params), (None, None));
    assert!(!r.verifier.windows(8).any(|w| k.0.windows(8).any(|x| x == w)));
}
