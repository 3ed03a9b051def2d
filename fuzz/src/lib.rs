//! The three targets, each with its seeds, its dictionary and an oracle beyond "does not
//! panic": the verifier is checked against an independent reading of Stripe's scheme, the
//! event parser's answers against the body, the packs parser's packs against its promises.

use std::path::Path;

use credits::{catalog::file::parse_packs, webhook::event, webhook::signature};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::SecretString;
use serde_json::Value;
use sha2::Sha256;

use crate::mutate::Rng;

/// What one execution showed: a class of behaviour (new classes grow the corpus), or a broken
/// promise.
pub type Verdict = Result<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Signature,
    Event,
    Packs,
}

impl Target {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "signature" => Some(Self::Signature),
            "event" => Some(Self::Event),
            "packs" => Some(Self::Packs),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Signature => "signature",
            Self::Event => "event",
            Self::Packs => "packs",
        }
    }

    pub fn max_len(self) -> usize {
        match self {
            // Past the 8 KiB header limit, so the limit itself is exercised.
            Self::Signature => 12 * 1024,
            Self::Event | Self::Packs => 64 * 1024,
        }
    }

    pub fn dictionary(self) -> &'static [&'static [u8]] {
        match self {
            Self::Signature => &[
                b"t=",
                b"v1=",
                b"v0=",
                b",",
                b"=",
                b" ",
                b"\n",
                b"1700000000",
                b"-1",
                b"+",
                b"9223372036854775807",
                b"00000000000000000000000000000000",
                b"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            ],
            Self::Event => &[
                b"null",
                b"true",
                b"{}",
                b"[]",
                b"\"\"",
                b"0",
                b"-1",
                b"1e999",
                b"1.5",
                b"9223372036854775808",
                b"-9223372036854775809",
                b"\"\\u0000\"",
                b"\"\\ud800\"",
                b"\"id\":",
                b"\"object\":",
                b"\"type\":",
                b"\"data\":",
                b"\"payment_intent\":",
                b"\"amount_refunded\":",
                b"\"metadata\":",
                b"\"charge.refunded\"",
                b"\"refund.updated\"",
                b"\"charge.dispute.closed\"",
                b"\"checkout.session\"",
                b"\"checkout.session.expired\"",
                b"\"paid\"",
                b"\"event\"",
            ],
            Self::Packs => &[
                b"[[pack]]\n",
                b"[pack]\n",
                b"id = ",
                b"name = ",
                b"credits = ",
                b"unit_amount = ",
                b"currency = ",
                b"stripe_price_id = ",
                b"expires_after_days = ",
                b"\"",
                b"'''",
                b"\"\"\"",
                b"\n",
                b"#",
                b"=",
                b"0",
                b"-1",
                b"9223372036854775807",
                b"36500",
                b"1979-05-27T07:32:00Z",
                b"inf",
                b"nan",
                b"\"\\u00e9\"",
                b"{ }",
                b"[ ]",
                b"\xc3\xa9",
            ],
        }
    }

    /// Seeds: handmade for the signature, the fixtures for events, the repository's packs.toml
    /// and variants for packs.
    pub fn seeds(self, repo: &Path) -> Vec<Vec<u8>> {
        match self {
            Self::Signature => signature_seeds(),
            Self::Event => {
                let mut seeds = Vec::new();
                for dir in [repo.join("tests/fixtures"), repo.join("../shared/fixtures")] {
                    let Ok(entries) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
                    paths.sort();
                    for path in paths {
                        if path.extension().is_some_and(|e| e == "json")
                            && let Ok(bytes) = std::fs::read(&path)
                        {
                            seeds.push(bytes);
                        }
                    }
                }
                seeds.push(br#"{"id":"evt_1","object":"event","type":"x","data":{"object":{}}}"#.to_vec());
                seeds
            }
            Self::Packs => {
                let mut seeds: Vec<Vec<u8>> = std::fs::read(repo.join("packs.toml")).into_iter().collect();
                seeds.push(
                    b"[[pack]]\nid = \"a\"\nname = \"A\"\ncredits = 1\nunit_amount = 1\ncurrency = \"USD\"\n\
                      stripe_price_id = \"price_1\"\nexpires_after_days = 365\n"
                        .to_vec(),
                );
                seeds.push(b"pack = [{ id = \"b\", name = \"B\", credits = 5, unit_amount = 9, currency = \"eur\" }]\n".to_vec());
                seeds
            }
        }
    }

    /// Runs the code under test on `input`.
    pub fn run(self, input: &[u8]) -> Verdict {
        match self {
            Self::Signature => run_signature(input),
            Self::Event => run_event(input),
            Self::Packs => run_packs(input),
        }
    }

    /// A mutation that knows the input's structure, when the target has one (JSON values).
    pub fn mutate_structured(self, rng: &mut Rng, input: &[u8]) -> Option<Vec<u8>> {
        match self {
            Self::Event => {
                let mut value: Value = serde_json::from_slice(input).ok()?;
                mutate_json(rng, &mut value, 0);
                serde_json::to_vec(&value).ok()
            }
            Self::Signature | Self::Packs => None,
        }
    }
}

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

/// An input is `<header>\n<body>`: both are mutated.
fn signature_seeds() -> Vec<Vec<u8>> {
    let body = br#"{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{}}}"#;
    let mut seeds = Vec::new();
    for (secret, t) in [
        (SECRETS[0], NOW),
        (SECRETS[1], NOW - 300),
        (SECRETS[0], NOW + 301),
    ] {
        let v1 = mac_hex(secret, &t.to_string(), body);
        for header in [
            format!("t={t},v1={v1}"),
            format!("t={t},v1={},v1={v1},v0=abc", "0".repeat(64)),
            format!(" t={t} , v1={v1} "),
        ] {
            let mut seed = header.into_bytes();
            seed.push(b'\n');
            seed.extend_from_slice(body);
            seeds.push(seed);
        }
    }
    seeds
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

fn run_signature(input: &[u8]) -> Verdict {
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

fn run_event(input: &[u8]) -> Verdict {
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
            Ok(format!("err {}", shape(&err.to_string())))
        }
    }
}

fn random_json(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(2)),
        2 => Value::from(rng.next() as i64),
        3 => Value::from(*rng.pick(&[0_i64, -1, i64::MAX, i64::MIN]).unwrap_or(&0)),
        4 => serde_json::Number::from_f64(rng.next() as f64 / 7.0).map_or(Value::Null, Value::Number),
        5 => Value::from(
            *rng.pick(&[
                "",
                "event",
                "paid",
                "unpaid",
                "usd",
                "pi_1",
                "cs_1",
                "succeeded",
                "lost",
                "é\u{0}",
            ])
            .unwrap_or(&""),
        ),
        6 => Value::Array((0..rng.below(3)).map(|_| random_json(rng, depth + 1)).collect()),
        _ => Value::Object(
            (0..rng.below(3))
                .map(|n| (format!("k{n}"), random_json(rng, depth + 1)))
                .collect(),
        ),
    }
}

/// Replaces, removes or adds one node somewhere in the tree.
fn mutate_json(rng: &mut Rng, value: &mut Value, depth: usize) {
    match value {
        Value::Object(map) if !map.is_empty() && (depth < 6 && !rng.chance(4)) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let Some(key) = rng.pick(&keys).cloned() else {
                return;
            };
            match rng.below(6) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(key, random_json(rng, depth));
                }
                _ => {
                    if let Some(child) = map.get_mut(&key) {
                        mutate_json(rng, child, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() && depth < 6 && !rng.chance(4) => {
            let i = rng.below(items.len());
            mutate_json(rng, &mut items[i], depth + 1);
        }
        other => *other = random_json(rng, depth),
    }
}

// --- packs -----------------------------------------------------------------------------------

fn run_packs(input: &[u8]) -> Verdict {
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
