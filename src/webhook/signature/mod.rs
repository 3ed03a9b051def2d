//! Stripe's webhook signature scheme, pure: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`, where
//! each `v1` is hex HMAC-SHA256 of `"<t>.<raw body>"` under the endpoint secret. The work a header
//! can cause is bounded: oversized headers are refused unhashed, and the MAC is computed once per
//! configured secret however many `v1` entries the header carries. Only lower-case hex, as
//! Stripe writes it, is compared: any change to a signature's text fails.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

/// Longer headers are refused before parsing: Stripe's own are under 100 bytes per secret.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// More `v1` entries are refused: Stripe sends one per active secret.
pub const MAX_V1_ENTRIES: usize = 16;

/// A SHA-256 MAC, hex: 32 bytes.
const MAC_BYTES: usize = 32;

/// Why a signed request was refused; each maps to one 400 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    MissingHeader,
    #[error("malformed Stripe-Signature header")]
    MalformedHeader,
    #[error("Stripe-Signature header longer than {MAX_HEADER_BYTES} bytes")]
    HeaderTooLarge,
    #[error("more than {MAX_V1_ENTRIES} v1 signatures in Stripe-Signature")]
    TooManySignatures,
    #[error("no signature matches the payload")]
    NoMatch,
    #[error("timestamp outside the tolerance zone")]
    OutsideTolerance,
}

impl SignatureError {
    /// Stable machine-readable name for the JSON answer.
    pub fn code(self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_signature_header",
            Self::MalformedHeader => "malformed_signature_header",
            Self::HeaderTooLarge => "signature_header_too_large",
            Self::TooManySignatures => "too_many_signatures",
            Self::NoMatch => "signature_mismatch",
            Self::OutsideTolerance => "timestamp_outside_tolerance",
        }
    }
}

struct ParsedHeader {
    timestamp: i64,
    /// The `v1` values that could be a MAC at all: exactly 64 hex digits.
    candidates: Vec<[u8; MAC_BYTES]>,
}

fn parse_header(header: &str) -> Result<ParsedHeader, SignatureError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(SignatureError::HeaderTooLarge);
    }
    let mut timestamp = None;
    let mut v1_entries = 0;
    let mut hex_v1_seen = false;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" if timestamp.is_none() => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::MalformedHeader)?,
                );
            }
            "v1" => {
                v1_entries += 1;
                if v1_entries > MAX_V1_ENTRIES {
                    return Err(SignatureError::TooManySignatures);
                }
                // A v1 that is not hex does not count as a signature (the header is malformed
                // if no other v1 is hex); a hex one of the wrong length cannot match, so it is
                // dropped here instead of being compared to a MAC.
                hex_v1_seen |= value.len() % 2 == 0 && value.bytes().all(|b| b.is_ascii_hexdigit());
                // Stripe writes lower-case hex; an upper-case copy is a changed signature, not
                // another spelling of it.
                let lower_hex = value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                let mut candidate = [0; MAC_BYTES];
                if value.len() == 2 * MAC_BYTES
                    && lower_hex
                    && hex::decode_to_slice(value, &mut candidate).is_ok()
                {
                    candidates.push(candidate);
                }
            }
            _ => {}
        }
    }
    match timestamp {
        Some(timestamp) if hex_v1_seen => Ok(ParsedHeader {
            timestamp,
            candidates,
        }),
        _ => Err(SignatureError::MalformedHeader),
    }
}

/// Checks `payload` against the header with any of `secrets` (several during a rotation), and
/// that the signed time is within `tolerance` of `now_unix` either way.
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[SecretString],
    tolerance: Duration,
    now_unix: i64,
) -> Result<(), SignatureError> {
    verify_counting_macs(payload, header, secrets, tolerance, now_unix).0
}

/// `verify`, also telling how many MACs of the payload it computed: the cost a header can
/// cause, which tests hold to one per secret.
fn verify_counting_macs(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[SecretString],
    tolerance: Duration,
    now_unix: i64,
) -> (Result<(), SignatureError>, usize) {
    let parsed = match header.ok_or(SignatureError::MissingHeader).and_then(parse_header) {
        Ok(parsed) => parsed,
        Err(err) => return (Err(err), 0),
    };
    let mut macs = 0;
    let mut matched = Choice::from(0);
    // Without a candidate nothing can match: no MAC is needed to say so.
    if !parsed.candidates.is_empty() {
        let signed_prefix = format!("{}.", parsed.timestamp);
        for secret in secrets {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
                continue;
            };
            mac.update(signed_prefix.as_bytes());
            mac.update(payload);
            let expected = mac.finalize().into_bytes();
            macs += 1;
            // Constant-time, and every candidate is compared: the answer's timing says
            // nothing about how close a guess came or which entry matched.
            for candidate in &parsed.candidates {
                matched |= expected[..].ct_eq(&candidate[..]);
            }
        }
    }
    if !bool::from(matched) {
        return (Err(SignatureError::NoMatch), macs);
    }
    let skew = now_unix.abs_diff(parsed.timestamp);
    if skew > tolerance.as_secs() {
        return (Err(SignatureError::OutsideTolerance), macs);
    }
    (Ok(()), macs)
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    // The published vector, checked with stripe-python and stripe-node.
    const SECRET: &str = "whsec_test_secret";
    const BODY: &str = r#"{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{"id":"in_1","object":"invoice"}}}"#;
    const HEADER: &str = "t=1700000000,v1=35a597b98e5e7c9feeae726957dcc7d15c533391f9275c017fbde494c89eb0c0";
    const TOLERANCE: Duration = Duration::from_secs(300);

    fn secrets(list: &[&str]) -> Vec<SecretString> {
        list.iter().map(|s| SecretString::from(*s)).collect()
    }

    #[test]
    fn the_sdk_test_vector_verifies() {
        assert_eq!(
            verify(
                BODY.as_bytes(),
                Some(HEADER),
                &secrets(&[SECRET]),
                TOLERANCE,
                1_700_000_000
            ),
            Ok(())
        );
    }

    #[test]
    fn any_rotated_secret_and_any_v1_verifies() {
        let header = format!(
            "t=1700000000,v1={},{},v0=abc",
            "00".repeat(32),
            HEADER.split(',').nth(1).unwrap_or_default()
        );
        let result = verify(
            BODY.as_bytes(),
            Some(&header),
            &secrets(&["whsec_old", SECRET]),
            TOLERANCE,
            1_700_000_000,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn tolerance_is_inclusive_both_ways() {
        let s = secrets(&[SECRET]);
        assert_eq!(
            verify(BODY.as_bytes(), Some(HEADER), &s, TOLERANCE, 1_700_000_300),
            Ok(())
        );
        assert_eq!(
            verify(BODY.as_bytes(), Some(HEADER), &s, TOLERANCE, 1_699_999_700),
            Ok(())
        );
        assert_eq!(
            verify(BODY.as_bytes(), Some(HEADER), &s, TOLERANCE, 1_700_000_301),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(
            verify(BODY.as_bytes(), Some(HEADER), &s, TOLERANCE, 1_699_999_699),
            Err(SignatureError::OutsideTolerance)
        );
    }

    #[test]
    fn bad_headers_are_told_apart() {
        let s = secrets(&[SECRET]);
        let check = |h: Option<&str>| verify(BODY.as_bytes(), h, &s, TOLERANCE, 1_700_000_000);
        assert_eq!(check(None), Err(SignatureError::MissingHeader));
        assert_eq!(check(Some("")), Err(SignatureError::MalformedHeader));
        assert_eq!(check(Some("t=abc,v1=00")), Err(SignatureError::MalformedHeader));
        assert_eq!(check(Some("t=1700000000")), Err(SignatureError::MalformedHeader));
        assert_eq!(
            check(Some("t=1700000000,v0=00")),
            Err(SignatureError::MalformedHeader)
        );
        assert_eq!(
            check(Some("t=1700000000,v1=zz")),
            Err(SignatureError::MalformedHeader)
        );
        assert_eq!(check(Some("t=1700000000,v1=00")), Err(SignatureError::NoMatch));
        let tampered = BODY.replace("in_1", "in_2");
        assert_eq!(
            verify(tampered.as_bytes(), Some(HEADER), &s, TOLERANCE, 1_700_000_000),
            Err(SignatureError::NoMatch)
        );
    }

    /// `n` well-formed `v1` entries that match nothing.
    fn bogus_entries(n: usize) -> String {
        (0..n).map(|i| format!(",v1={i:064x}")).collect()
    }

    fn valid_entry() -> &'static str {
        HEADER.split(',').nth(1).unwrap_or_default()
    }

    fn check(header: &str, secret_list: &[&str]) -> (Result<(), SignatureError>, usize) {
        verify_counting_macs(
            BODY.as_bytes(),
            Some(header),
            &secrets(secret_list),
            TOLERANCE,
            1_700_000_000,
        )
    }

    #[test]
    fn a_full_header_costs_one_mac_per_secret_not_per_entry() {
        let header = format!("t=1700000000{}", bogus_entries(MAX_V1_ENTRIES));
        assert_eq!(
            check(&header, &["whsec_a", "whsec_b", SECRET]),
            (Err(SignatureError::NoMatch), 3)
        );
        let header = format!(
            "t=1700000000{},{}",
            bogus_entries(MAX_V1_ENTRIES - 1),
            valid_entry()
        );
        assert_eq!(check(&header, &["whsec_a", SECRET]), (Ok(()), 2));
    }

    #[test]
    fn candidates_that_are_not_64_hex_digits_are_dropped_unhashed() {
        let header = format!(
            "t=1700000000,v1=,v1=00,v1={},v1={},v1={}",
            "f".repeat(62),
            "f".repeat(66),
            "z".repeat(64)
        );
        assert_eq!(check(&header, &[SECRET]), (Err(SignatureError::NoMatch), 0));
        // No hex v1 at all is a malformed header, as before.
        let header = format!("t=1700000000,v1=zz,v1={}", "z".repeat(64));
        assert_eq!(
            check(&header, &[SECRET]),
            (Err(SignatureError::MalformedHeader), 0)
        );
    }

    #[test]
    fn a_valid_signature_among_bogus_entries_verifies() {
        let header = format!(
            "t=1700000000,v1=,v1=00,v1={},{},v1={}",
            "z".repeat(64),
            valid_entry(),
            "0".repeat(64)
        );
        assert_eq!(check(&header, &[SECRET]), (Ok(()), 1));
    }

    #[test]
    fn headers_past_the_limits_are_refused_before_any_mac() {
        // The shape of the incident: 50,000 empty entries, once 50,000 MACs of the body.
        let flood = format!("t=1700000000{}", ",v1=".repeat(50_000));
        assert_eq!(check(&flood, &[SECRET]), (Err(SignatureError::HeaderTooLarge), 0));
        let too_many = format!("t=1700000000{}", bogus_entries(MAX_V1_ENTRIES + 1));
        assert!(too_many.len() <= MAX_HEADER_BYTES);
        assert_eq!(
            check(&too_many, &[SECRET]),
            (Err(SignatureError::TooManySignatures), 0)
        );
        let mut at_limit = format!("{HEADER},pad=");
        at_limit.push_str(&"a".repeat(MAX_HEADER_BYTES - at_limit.len()));
        assert_eq!(check(&at_limit, &[SECRET]), (Ok(()), 1));
        at_limit.push('a');
        assert_eq!(
            check(&at_limit, &[SECRET]),
            (Err(SignatureError::HeaderTooLarge), 0)
        );
    }
}
