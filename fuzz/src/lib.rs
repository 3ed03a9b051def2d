//! The code under test for the `cargo fuzz` targets in `fuzz_targets/`, each with an oracle
//! beyond "does not panic": the verifier is checked against an independent reading of Stripe's
//! scheme, the event parser's answers against the body, the packs parser's packs against its
//! promises. A broken oracle panics in the target, which libFuzzer reports as a crash.

use credits::{billing::payload as event, catalog::file::parse_packs, report::error_chain, webhook::signature};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::SecretString;
use sha2::Sha256;

/// What one execution showed: a class of behaviour, or a broken promise.
pub type Verdict = Result<String, String>;

// --- signature -------------------------------------------------------------------------------

const NOW: i64 = 1_700_000_000;
const TOLERANCE_SECS: u64 = 300;
const SECRETS: [&str; 2] = ["whsec_fuzz_a", "whsec_fuzz_b"];

fn mac_hex(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Stripe's rule read independently: the first `t`, a `v1` equal to the lower-case hex MAC of
/// `"{t}.{body}"` under some secret, `t` within the tolerance, and the header limits.
fn should_verify(header: &str, body: &[u8]) -> bool {
    let parts: Vec<(&str, &str)> = header
        .split(',')
        .filter_map(|p| p.trim().split_once('='))
        .collect();
    let Some(t) = parts.iter().find(|(k, _)| *k == "t").map(|(_, v)| *v) else {
        return false;
    };
    let Ok(timestamp) = t.parse::<i64>() else {
        return false;
    };
    let v1: Vec<&str> = parts
        .iter()
        .filter(|(k, _)| *k == "v1")
        .map(|(_, v)| *v)
        .collect();
    let canonical = timestamp.to_string();
    header.len() <= signature::MAX_HEADER_BYTES
        && v1.len() <= signature::MAX_V1_ENTRIES
        && NOW.abs_diff(timestamp) <= TOLERANCE_SECS
        && SECRETS.iter().any(|s| {
            let expected = mac_hex(s, &canonical, body);
            v1.contains(&expected.as_str())
        })
}

/// The `signature` target's run.
pub fn signature(input: &[u8]) -> Verdict {
    let (header, body) = match input.iter().position(|b| *b == b'\n') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[][..]),
    };
    // As the handler reads it: a header that is not visible text is no header.
    let header = std::str::from_utf8(header).ok();
    let secrets: Vec<SecretString> = SECRETS.iter().map(|s| SecretString::from(*s)).collect();
    let tolerance = std::time::Duration::from_secs(TOLERANCE_SECS);
    let result = signature::verify(body, header, &secrets, tolerance, NOW);
    let expected = header.is_some_and(|h| should_verify(h, body));
    if result.is_ok() != expected {
        return Err(format!(
            "verify answered {result:?}, an independent reading of the scheme says {}",
            if expected { "valid" } else { "invalid" }
        ));
    }
    Ok(format!("{result:?}"))
}

// --- event -----------------------------------------------------------------------------------

/// A class of messages: digits (line, column, numbers) and quoted input do not make a new class.
fn shape(message: &str) -> String {
    message
        .chars()
        .take_while(|c| !matches!(c, '"' | '`' | '\''))
        .filter(|c| !c.is_ascii_digit())
        .take(48)
        .collect()
}

/// The `event` target's run.
pub fn event(input: &[u8]) -> Verdict {
    match event::parse_event(input) {
        Ok(parsed) => {
            if parsed.id.trim().is_empty() || parsed.event_type.trim().is_empty() {
                return Err("an event with an empty id or type was accepted".into());
            }
            if parsed.payload.as_bytes() != input {
                return Err("the stored payload differs from the verified body".into());
            }
            let action = format!("{:?}", parsed.action);
            let kind = action
                .split(['(', ' ', '{'])
                .next()
                .unwrap_or_default()
                .to_owned();
            Ok(format!(
                "ok {} {kind}",
                event::event_type_label(&parsed.event_type)
            ))
        }
        Err(err) => {
            // What the handler stores instead: it must be storable.
            let stored = event::unparsable_event(input);
            if stored.id.is_empty() || stored.id.len() > 255 || stored.payload.contains('\0') {
                return Err(format!("unparsable event not storable: id {:?}", stored.id));
            }
            Ok(format!("err {}", shape(&error_chain(&err))))
        }
    }
}

// --- packs -----------------------------------------------------------------------------------

/// The `packs` target's run.
pub fn packs(input: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(input);
    match parse_packs("packs.toml", &text) {
        Ok(packs) => {
            if packs.is_empty() {
                return Err("no packs accepted as a packs file".into());
            }
            let mut ids = std::collections::HashSet::new();
            let mut prices = std::collections::HashSet::new();
            for pack in &packs {
                let slug = !pack.id.is_empty()
                    && pack
                        .id
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
                let currency =
                    pack.currency.len() == 3 && pack.currency.chars().all(|c| c.is_ascii_lowercase());
                let broken = !slug
                    || !ids.insert(pack.id.clone())
                    || pack.name.trim().is_empty()
                    || pack.name.trim() != pack.name
                    || pack.credits <= 0
                    || pack.unit_amount <= 0
                    || !currency
                    || pack
                        .stripe_price_id
                        .as_ref()
                        .is_some_and(|p| p.is_empty() || !prices.insert(p.clone()))
                    || pack
                        .expires_after_days
                        .is_some_and(|d| !(1..=36_500).contains(&d));
                if broken {
                    return Err(format!("a pack breaking the file's rules was accepted: {pack:?}"));
                }
            }
            Ok(format!("ok {}", packs.len().min(4)))
        }
        Err(err) => {
            let message = err.to_string();
            let lines = text.lines().count() + 1;
            let line = message
                .strip_prefix("packs.toml:")
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse::<usize>().ok());
            match line {
                Some(line) if (1..=lines).contains(&line) => {
                    // `packs.toml:<line>: <field>: <reason>`: a field the file does not have
                    // makes no new class.
                    let mut parts = message.splitn(3, ": ").skip(1);
                    let field = parts.next().unwrap_or_default();
                    let known = [
                        "id",
                        "name",
                        "credits",
                        "unit_amount",
                        "currency",
                        "stripe_price_id",
                        "expires_after_days",
                        "pack",
                    ];
                    let field = if known.contains(&field) { field } else { "other" };
                    Ok(format!("err {field} {}", shape(parts.next().unwrap_or_default())))
                }
                _ => Err(format!("error names no line of the file: {message}")),
            }
        }
    }
}
