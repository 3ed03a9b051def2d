//! Stripe's webhook signature scheme, pure: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`, where
//! each `v1` is hex HMAC-SHA256 of `"<t>.<raw body>"` under the endpoint secret.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Why a signed request was refused; each maps to one 400 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    MissingHeader,
    #[error("malformed Stripe-Signature header")]
    MalformedHeader,
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
            Self::NoMatch => "signature_mismatch",
            Self::OutsideTolerance => "timestamp_outside_tolerance",
        }
    }
}

struct ParsedHeader {
    timestamp: i64,
    v1: Vec<Vec<u8>>,
}

fn parse_header(header: &str) -> Result<ParsedHeader, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
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
            // A v1 that is not hex cannot match; keep looking at the others.
            "v1" => v1.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    match timestamp {
        Some(timestamp) if !v1.is_empty() => Ok(ParsedHeader { timestamp, v1 }),
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
    let header = header.ok_or(SignatureError::MissingHeader)?;
    let parsed = parse_header(header)?;
    let matched = secrets.iter().any(|secret| {
        parsed.v1.iter().any(|candidate| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
                return false;
            };
            mac.update(parsed.timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(payload);
            // Constant-time comparison.
            mac.verify_slice(candidate).is_ok()
        })
    });
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    let skew = now_unix.abs_diff(parsed.timestamp);
    if skew > tolerance.as_secs() {
        return Err(SignatureError::OutsideTolerance);
    }
    Ok(())
}

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
}
