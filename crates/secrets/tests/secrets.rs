//! Behaviour tests for the secret store with real cryptography: envelope round trips,
//! wrong keys, tampering and re-binding, key rotation, the sealed vault, name and value
//! rules, key files and text format, and the encoded forms used for log masking.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sluice_secrets::*;

/// Asserts that `$e` is `Err` of the given `SecretsError` variant.
macro_rules! assert_err {
    ($e:expr, $variant:ident) => {
        match $e {
            Err(SecretsError::$variant { .. }) => {}
            Err(other) => panic!("expected {}, got {other}", stringify!($variant)),
            Ok(_) => panic!("expected {}, got Ok", stringify!($variant)),
        }
    };
}

/// `secret()` with one change applied.
fn with(change: impl FnOnce(&mut SecretRef)) -> SecretRef {
    let mut r = secret();
    change(&mut r);
    r
}

fn secret() -> SecretRef {
    SecretRef {
        id: "sec_01".into(),
        project: "shop".into(),
        environment: Some("production".into()),
        name: "DATABASE_URL".into(),
        version: 3,
    }
}

fn sealed_pair(kek: &Kek) -> (SecretRef, Sealed) {
    let s = seal(kek, &secret(), b"postgres://u:hunter2@db/shop").unwrap();
    (secret(), s)
}

#[test]
fn round_trip_and_serde() {
    let kek = Kek::generate().unwrap();
    let (r, s) = sealed_pair(&kek);
    assert_eq!(s.kek_id, kek.key_id());
    assert_eq!(s.wrapped_dek.len(), 24 + 32 + 16);
    assert_eq!(s.ciphertext.len(), 24 + 28 + 16);
    assert_eq!(
        &open(&kek, &r, &s).unwrap()[..],
        b"postgres://u:hunter2@db/shop"
    );
    // Each seal uses a fresh DEK and nonces.
    let again = seal(&kek, &r, b"postgres://u:hunter2@db/shop").unwrap();
    assert_ne!(again.ciphertext, s.ciphertext);
    assert_ne!(again.wrapped_dek, s.wrapped_dek);
    // Serde: bytes as base64 strings, and back.
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["wrapped_dek"].is_string() && json["ciphertext"].is_string());
    assert!(!json.to_string().contains("hunter2"));
    assert_eq!(serde_json::from_value::<Sealed>(json).unwrap(), s);
    let empty = seal(&kek, &r, b"").unwrap();
    assert!(open(&kek, &r, &empty).unwrap().is_empty());
}

#[test]
fn wrong_key_is_refused() {
    let (a, b) = (Kek::generate().unwrap(), Kek::generate().unwrap());
    assert_ne!(a.key_id(), b.key_id());
    let (r, s) = sealed_pair(&a);
    assert_err!(open(&b, &r, &s), WrongKey);
    // Even with a forged key id, the other key cannot unwrap the DEK.
    let forged = Sealed {
        kek_id: b.key_id(),
        ..s
    };
    assert_err!(open(&b, &r, &forged), Tampered);
}

#[test]
fn tampering_and_rebinding_fail() {
    let kek = Kek::generate().unwrap();
    let (r, s) = sealed_pair(&kek);
    for i in [0, 24, s.ciphertext.len() - 1] {
        let mut bad = s.clone();
        bad.ciphertext[i] ^= 1;
        assert_err!(open(&kek, &r, &bad), Tampered);
    }
    for i in [0, 30, s.wrapped_dek.len() - 1] {
        let mut bad = s.clone();
        bad.wrapped_dek[i] ^= 0x80;
        assert_err!(open(&kek, &r, &bad), Tampered);
    }
    let mut short = s.clone();
    short.ciphertext.truncate(10);
    assert_err!(open(&kek, &r, &short), Tampered);
    // Moving the row to another id, project, scope, name or version fails.
    let moved = [
        with(|r| r.id = "sec_02".into()),
        with(|r| r.project = "blog".into()),
        with(|r| r.environment = Some("staging".into())),
        with(|r| r.environment = None),
        with(|r| r.name = "DATABASE_URI".into()),
        with(|r| r.version = 2),
    ];
    for other in &moved {
        assert_err!(open(&kek, other, &s), Tampered);
    }
    // A wrapped key swapped in from another secret fails.
    let s2 = seal(&kek, &with(|r| r.name = "API_TOKEN".into()), b"tok").unwrap();
    let swapped = Sealed {
        wrapped_dek: s2.wrapped_dek,
        ..s.clone()
    };
    assert_err!(open(&kek, &r, &swapped), Tampered);
    let err = open(&kek, &moved[5], &s).unwrap_err().to_string();
    assert!(
        err.contains("shop/production/DATABASE_URL@v2") && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn rewrap_keeps_ciphertext_and_switches_key() {
    let (old, new) = (Kek::generate().unwrap(), Kek::generate().unwrap());
    let (r, s) = sealed_pair(&old);
    let rotated = rewrap(&old, &new, &r, &s).unwrap();
    assert_eq!(rotated.ciphertext, s.ciphertext);
    assert_ne!(rotated.wrapped_dek, s.wrapped_dek);
    assert_eq!(rotated.kek_id, new.key_id());
    assert_eq!(
        &open(&new, &r, &rotated).unwrap()[..],
        b"postgres://u:hunter2@db/shop"
    );
    assert_err!(open(&old, &r, &rotated), WrongKey);
    // Rewrapping needs the old key and the right ref.
    assert_err!(rewrap(&new, &old, &r, &s), WrongKey);
    assert_err!(rewrap(&old, &new, &with(|r| r.version = 4), &s), Tampered);
}

#[test]
fn sealed_vault_refuses_until_unsealed() {
    let kek = Kek::generate().unwrap();
    let (r, s) = sealed_pair(&kek);
    let vault = Vault::sealed();
    assert!(vault.is_sealed() && vault.key_id().is_none());
    assert_err!(vault.seal(&r, b"x"), Sealed);
    assert_err!(vault.open(&r, &s), Sealed);
    assert_err!(vault.rewrap(&kek, &r, &s), Sealed);
    assert!(SecretsError::Sealed.to_string().contains("sluice unseal"));

    // A wrong key is refused and the vault stays sealed.
    let wrong = Kek::generate().unwrap();
    let pair = (r.clone(), s.clone());
    assert_err!(vault.unseal(wrong.clone(), Some(&pair)), WrongKey);
    assert_err!(
        vault.unseal_expecting_id(wrong.clone(), &kek.key_id()),
        WrongKey
    );
    assert!(vault.is_sealed());
    // A tampered check value also refuses.
    let mut bad = pair.clone();
    bad.1.ciphertext[30] ^= 1;
    assert_err!(vault.unseal(kek.clone(), Some(&bad)), Tampered);
    assert!(vault.is_sealed());

    assert_eq!(
        vault.unseal(kek.clone(), Some(&pair)).unwrap(),
        kek.key_id()
    );
    assert_eq!(vault.key_id(), Some(kek.key_id()));
    assert_eq!(
        &vault.open(&r, &s).unwrap()[..],
        b"postgres://u:hunter2@db/shop"
    );
    let fresh = vault.seal(&r, b"v2").unwrap();
    assert_eq!(&open(&kek, &r, &fresh).unwrap()[..], b"v2");
    // While unsealed, a different key is refused; Debug shows only the key id.
    assert_err!(vault.unseal(wrong.clone(), None), WrongKey);
    assert_err!(
        vault.unseal_expecting_id(wrong.clone(), &wrong.key_id()),
        WrongKey
    );
    assert_eq!(vault.key_id(), Some(kek.key_id()));
    assert!(!format!("{vault:?}").contains(kek.to_text().as_str()));

    vault.seal_now();
    assert!(vault.is_sealed());
    assert_err!(vault.open(&r, &s), Sealed);
    let unsealed = Vault::unsealed(kek.clone());
    assert_eq!(
        unsealed
            .unseal_expecting_id(kek.clone(), &kek.key_id())
            .unwrap(),
        kek.key_id()
    );
}

#[test]
fn name_rules() {
    for ok in [
        "A",
        "_",
        "DATABASE_URL",
        "api_key_2",
        "_x9",
        &"N".repeat(128),
    ] {
        assert!(validate_name(ok).is_ok(), "{ok}");
    }
    let long = "N".repeat(129);
    let bad = [
        "", "../x", "..", "a/b", "/etc/x", "a\\b", "a.b", "A\0B", "1ABC", "a b", "a-b",
    ];
    for name in bad.into_iter().chain(["ünï", "A=B", "$HOME", "\n", &long]) {
        let err = validate_name(name).unwrap_err().to_string();
        assert!(err.contains("letters, digits and underscores"), "{err}");
    }
    assert!(
        validate_name("../x")
            .unwrap_err()
            .to_string()
            .contains("path character")
    );
    assert!(
        validate_name("A\0B")
            .unwrap_err()
            .to_string()
            .contains(r"\0")
    );
    let kek = Kek::generate().unwrap();
    assert_err!(
        seal(&kek, &with(|r| r.name = "../etc".into()), b"v"),
        InvalidName
    );
}

#[test]
fn value_size_limit() {
    assert!(validate_value(&vec![0; MAX_VALUE]).is_ok());
    let err = validate_value(&vec![0; MAX_VALUE + 1]).unwrap_err();
    assert!(err.to_string().contains("64 KiB"), "{err}");
    let kek = Kek::generate().unwrap();
    assert_err!(
        seal(&kek, &secret(), &vec![7; MAX_VALUE + 1]),
        ValueTooLarge
    );
}

#[test]
fn key_text_format() {
    let kek = Kek::generate().unwrap();
    let text = kek.to_text();
    let body = &text[KEK_PREFIX.len()..];
    assert!(text.starts_with(KEK_PREFIX) && body.len() == 44);
    assert_eq!(
        Kek::from_text(&format!("  {}\n", *text)).unwrap().key_id(),
        kek.key_id()
    );
    assert_eq!(kek.key_id().len(), 16);
    assert!(
        Kek::from_env("SLUICE_SECRETS_TEST_UNSET_VARIABLE")
            .unwrap()
            .is_none()
    );
    let debug = format!("{kek:?}");
    assert!(
        debug.contains(&kek.key_id()) && !debug.contains(body),
        "{debug}"
    );
    let bad = [
        body.to_owned(),
        format!("sluice-kek-v2:{body}"),
        format!("{KEK_PREFIX}{body}!"),
        format!("{KEK_PREFIX}{}", &body[..40]),
        format!("{KEK_PREFIX}c2VjcmV0"),
        String::new(),
    ];
    for text in bad {
        let msg = Kek::from_text(&text).unwrap_err().to_string();
        assert!(msg.contains("sluice-kek-v1:<base64 of 32 bytes>"), "{msg}");
        assert!(!msg.contains(&body[..20]), "error leaks key text: {msg}");
    }
}

#[cfg(unix)]
#[test]
fn key_files() {
    use std::fs::{Permissions, metadata, set_permissions, write};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.key");
    let kek = Kek::generate().unwrap();
    kek.write_new(&path).unwrap();
    assert_eq!(metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(Kek::load(&path).unwrap().key_id(), kek.key_id());
    // Never overwrite.
    assert_err!(Kek::generate().unwrap().write_new(&path), KeyFileExists);
    assert_eq!(Kek::load(&path).unwrap().key_id(), kek.key_id());
    // Group/other-readable files are refused.
    set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
    let msg = Kek::load(&path).unwrap_err().to_string();
    assert!(msg.contains("644") && msg.contains("chmod 600"), "{msg}");
    // Malformed content: clear error, no key text echoed.
    let bad = dir.path().join("bad.key");
    write(&bad, "sluice-kek-v1:not*base64*TOPSECRETMATERIAL").unwrap();
    set_permissions(&bad, Permissions::from_mode(0o600)).unwrap();
    let msg = Kek::load(&bad).unwrap_err().to_string();
    assert!(
        msg.contains("not valid base64") && !msg.contains("TOPSECRET"),
        "{msg}"
    );
    assert_err!(Kek::load(&dir.path().join("missing.key")), Io);
}

#[test]
fn encoded_forms_of_known_values() {
    let forms = [
        "hi ~?>",       // exact
        "aGkgfj8+",     // base64 (no padding needed, so unpadded is the same)
        "aGkgfj8-",     // URL-safe base64
        "YUdrZ2ZqOCs=", // double base64
        "YUdrZ2ZqOCs",  // double base64, unpadded
        "6869207e3f3e", // hex
        "6869207E3F3E", // HEX
        "hi%20~%3F%3E", // percent-encoded
        "hi+~%3F%3E",   // form-encoded
    ];
    assert_eq!(encoded_forms(b"hi ~?>"), forms);
    // Short forms are skipped, duplicates dropped.
    assert_eq!(encoded_forms(b"ab"), ["YWI=", "WVdJPQ==", "WVdJPQ", "6162"]);
    // Non-UTF-8 values have no exact form.
    let forms = encoded_forms(&[0xff, 0xfe, 0x00, 0x01]);
    assert_eq!(forms[0], "//4AAQ==");
    assert!(forms.iter().any(|f| f == "fffe0001") && forms.iter().any(|f| f == "%FF%FE%00%01"));
}

fn any_ref() -> impl Strategy<Value = SecretRef> {
    let name = "[A-Za-z_][A-Za-z0-9_]{0,40}";
    let env = proptest::option::of(".{0,20}");
    (".{0,20}", ".{0,20}", env, name, any::<i64>()).prop_map(
        |(id, project, environment, name, version)| SecretRef {
            id,
            project,
            environment,
            name,
            version,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn prop_round_trip(r in any_ref(), value in proptest::collection::vec(any::<u8>(), 0..2048), bump in 1i64..5) {
        let kek = Kek::generate().unwrap();
        let s = seal(&kek, &r, &value).unwrap();
        prop_assert_eq!(&open(&kek, &r, &s).unwrap()[..], &value[..]);
        let other = SecretRef { version: r.version.wrapping_add(bump), ..r.clone() };
        prop_assert!(open(&kek, &other, &s).is_err());
        let back: Sealed = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        prop_assert_eq!(&open(&kek, &r, &back).unwrap()[..], &value[..]);
    }
}
