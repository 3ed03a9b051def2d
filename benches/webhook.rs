//! Micro-benchmarks of the webhook's CPU work per delivery: verifying `Stripe-Signature` over a
//! real-shaped body, and parsing each fixture into an event. `cargo bench --bench webhook`.

use std::{hint::black_box, time::Duration};

use credits::{billing::payload::parse_event, webhook::signature};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::SecretString;
use sha2::Sha256;

const FIXTURES: [(&str, &str); 6] = [
    (
        "completed",
        include_str!("../tests/fixtures/checkout_session_completed.json"),
    ),
    (
        "completed_unpaid",
        include_str!("../tests/fixtures/checkout_session_completed_unpaid.json"),
    ),
    (
        "async_succeeded",
        include_str!("../tests/fixtures/checkout_session_async_payment_succeeded.json"),
    ),
    (
        "async_failed",
        include_str!("../tests/fixtures/checkout_session_async_payment_failed.json"),
    ),
    (
        "expired",
        include_str!("../tests/fixtures/checkout_session_expired.json"),
    ),
    (
        "charge_refunded",
        include_str!("../tests/fixtures/charge_refunded.json"),
    ),
];

fn sign(body: &str, secret: &str, t: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn verification(c: &mut Criterion) {
    let body = FIXTURES[0].1;
    let now = 1_800_000_000;
    let secrets = [SecretString::from("whsec_bench")];
    let valid = sign(body, "whsec_bench", now);
    // The most a header may carry: 16 candidates, the valid one last.
    let bogus = format!("v1={},", "0".repeat(64)).repeat(15);
    let crowded = format!("t={now},{bogus}v1={}", &valid[valid.len() - 64..]);
    let mut group = c.benchmark_group("signature");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("valid", |b| {
        b.iter(|| {
            signature::verify(
                black_box(body.as_bytes()),
                Some(&valid),
                &secrets,
                Duration::from_secs(300),
                now,
            )
        })
    });
    group.bench_function("sixteen_candidates", |b| {
        b.iter(|| {
            signature::verify(
                black_box(body.as_bytes()),
                Some(&crowded),
                &secrets,
                Duration::from_secs(300),
                now,
            )
        })
    });
    group.finish();
}

fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_event");
    for (name, body) in FIXTURES {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| parse_event(black_box(body.as_bytes())).is_ok())
        });
    }
    group.finish();
}

criterion_group!(benches, verification, parsing);
criterion_main!(benches);
