//! `Credits-Signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the scheme
//! Stripe uses for `Stripe-Signature`, so receivers can verify it with the code they already
//! have for Stripe (with their own secret and header name). Pure.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The header the signature goes in.
pub(crate) const HEADER: &str = "Credits-Signature";

/// The header value for `body` signed at `timestamp` (unix seconds) with `secret`.
pub(crate) fn sign(secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::webhook::signature::verify;

    // Stripe's published vector (the webhook verifier's tests use it too).
    const SECRET: &str = "whsec_test_secret";
    const BODY: &str = r#"{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{"id":"in_1","object":"invoice"}}}"#;
    const HEADER_VALUE: &str =
        "t=1700000000,v1=35a597b98e5e7c9feeae726957dcc7d15c533391f9275c017fbde494c89eb0c0";

    #[test]
    fn signing_matches_stripes_published_vector() {
        let secret = SecretString::from(SECRET);
        assert_eq!(sign(&secret, 1_700_000_000, BODY.as_bytes()), HEADER_VALUE);
    }

    #[test]
    fn the_stripe_verifier_accepts_what_we_sign_and_only_with_our_secret() {
        let secret = SecretString::from("notify_secret");
        let body = br#"{"id":"evt_x","sequence":7}"#;
        let header = sign(&secret, 1_800_000_000, body);
        let tolerance = Duration::from_secs(300);
        assert_eq!(
            verify(body, Some(&header), &[secret], tolerance, 1_800_000_010),
            Ok(())
        );
        let other = SecretString::from("another_secret");
        assert!(verify(body, Some(&header), &[other], tolerance, 1_800_000_010).is_err());
        let changed = br#"{"id":"evt_x","sequence":8}"#;
        let again = SecretString::from("notify_secret");
        assert!(verify(changed, Some(&header), &[again], tolerance, 1_800_000_010).is_err());
    }
}
