//! Properties of `verify` for any body, secret and time: a signature made the way Stripe makes
//! it verifies, and changing any one byte of the body, the timestamp or the signature fails.

use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use secrecy::SecretString;
use sha2::Sha256;

use super::*;

const TOLERANCE: Duration = Duration::from_secs(300);

/// Stripe's scheme, written out independently of the code under test.
fn sign(body: &[u8], secret: &str, timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// What the handler does with a header: one that is not UTF-8 is no header at all.
fn check(body: &[u8], header: &[u8], secret: &str, now: i64) -> Result<(), SignatureError> {
    let secrets = [SecretString::from(secret.to_owned())];
    verify(body, std::str::from_utf8(header).ok(), &secrets, TOLERANCE, now)
}

/// Replaces the byte at `index` (taken modulo the range's length) by a different byte.
fn changed(bytes: &[u8], range: std::ops::Range<usize>, index: usize, xor: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[range.start + index % range.len()] ^= xor;
    out
}

fn inputs() -> impl Strategy<Value = (Vec<u8>, String, i64, i64)> {
    (
        proptest::collection::vec(any::<u8>(), 1..512),
        "[ -~]{1,64}",
        1_000_000_000_i64..4_000_000_000,
        -300_i64..=300,
    )
}

#[test]
fn the_signature_in_upper_case_is_a_changed_signature_and_fails() {
    let (body, secret) = (b"{}".as_slice(), "whsec_x");
    let header = sign(body, secret, 1_700_000_000);
    assert_eq!(check(body, header.as_bytes(), secret, 1_700_000_000), Ok(()));
    let (prefix, mac) = header.split_at(header.find("v1=").expect("v1") + 3);
    let upper = format!("{prefix}{}", mac.to_ascii_uppercase());
    assert_ne!(upper, header, "the MAC has a letter in it");
    assert!(check(body, upper.as_bytes(), secret, 1_700_000_000).is_err());
}

proptest! {
    #[test]
    fn a_signature_made_as_stripe_makes_it_verifies((body, secret, t, skew) in inputs()) {
        let header = sign(&body, &secret, t);
        prop_assert_eq!(check(&body, header.as_bytes(), &secret, t + skew), Ok(()));
    }

    #[test]
    fn any_single_byte_change_of_the_body_fails(
        (body, secret, t, skew) in inputs(), index in any::<usize>(), xor in 1_u8..=255,
    ) {
        let header = sign(&body, &secret, t);
        let tampered = changed(&body, 0..body.len(), index, xor);
        prop_assert!(check(&tampered, header.as_bytes(), &secret, t + skew).is_err());
    }

    #[test]
    fn any_single_byte_change_of_the_timestamp_fails(
        (body, secret, t, skew) in inputs(), index in any::<usize>(), xor in 1_u8..=255,
    ) {
        let header = sign(&body, &secret, t);
        let digits = 2..header.find(',').expect("t=…,v1=…");
        let tampered = changed(header.as_bytes(), digits, index, xor);
        prop_assert!(check(&body, &tampered, &secret, t + skew).is_err());
    }

    #[test]
    fn any_single_byte_change_of_the_signature_fails(
        (body, secret, t, skew) in inputs(),
        index in any::<usize>(),
        // 0x20 flips a letter's case: a hex decoder would read it as the same byte.
        xor in prop_oneof![Just(0x20_u8), 1_u8..=255],
    ) {
        let header = sign(&body, &secret, t);
        let mac = header.find("v1=").expect("t=…,v1=…") + 3..header.len();
        let tampered = changed(header.as_bytes(), mac, index, xor);
        prop_assert!(check(&body, &tampered, &secret, t + skew).is_err());
    }
}
