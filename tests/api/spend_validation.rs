//! Every spend RPC refuses a bad field with INVALID_ARGUMENT naming it, before anything is
//! written; the bounds themselves are accepted.

use std::collections::HashMap;

use chrono::Utc;
use credits::grpc::pb;
use tonic::Code;

use crate::helpers::{
    TestApp, spawn_app,
    spend::{assert_refused, consume_request, grant_request, reserve_request, time_of, timestamp},
};

const MAX_CREDITS: i64 = 1_000_000_000_000;

type Metadata = HashMap<String, String>;

fn metadata(pairs: impl IntoIterator<Item = (String, String)>) -> Metadata {
    pairs.into_iter().collect()
}

/// Metadata at each limit, and one past each.
fn metadata_cases() -> (Vec<Metadata>, Vec<Metadata>) {
    let most_keys = metadata((0..20).map(|n| (format!("k{n}"), "v".to_owned())));
    let longest = metadata([("k".repeat(40), "é".repeat(500))]);
    let too_many = metadata((0..21).map(|n| (format!("k{n}"), "v".to_owned())));
    let long_key = metadata([("k".repeat(41), "v".to_owned())]);
    let long_value = metadata([("k".to_owned(), "v".repeat(501))]);
    (vec![most_keys, longest], vec![too_many, long_key, long_value])
}

async fn funded(app: &TestApp, id: &str) {
    app.ensure(id).await;
    app.grant(id, 1000, "fund").await;
}

#[tokio::test]
async fn credits_range_from_one_to_ten_to_the_twelfth() {
    let app = spawn_app().await;
    funded(&app, "ranged").await;
    for bad in [0, -1, MAX_CREDITS + 1, i64::MIN] {
        assert_refused(
            app.send_grant(grant_request("ranged", bad, &format!("g{bad}")))
                .await,
            Code::InvalidArgument,
            "credits",
        );
        assert_refused(
            app.consume("ranged", bad, &format!("c{bad}")).await,
            Code::InvalidArgument,
            "credits",
        );
        assert_refused(
            app.reserve("ranged", bad, &format!("r{bad}"), 60).await,
            Code::InvalidArgument,
            "credits",
        );
    }
    let hold = app.reserve("ranged", 10, "hold", 60).await.expect("reserve");
    for bad in [0, -5] {
        assert_refused(
            app.capture(&hold.hold_id, bad).await,
            Code::InvalidArgument,
            "credits",
        );
    }
    let most = app.grant("ranged", MAX_CREDITS, "most").await;
    assert_eq!(most.credit_balance, MAX_CREDITS + 1000);
    app.consume("ranged", MAX_CREDITS, "spend-most")
        .await
        .expect("the most in one call");
    assert_eq!(
        app.entries("ranged").await.len(),
        3,
        "only the accepted calls wrote"
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn reason_is_one_to_sixty_four_characters() {
    let app = spawn_app().await;
    funded(&app, "reasons").await;
    for bad in ["", "   ", &"x".repeat(65), "tab\there"] {
        let key = format!("k{}", bad.len());
        assert_refused(
            app.send_grant(pb::GrantCreditsRequest {
                reason: bad.into(),
                ..grant_request("reasons", 1, &key)
            })
            .await,
            Code::InvalidArgument,
            "reason",
        );
        assert_refused(
            app.send_consume(pb::ConsumeCreditsRequest {
                reason: bad.into(),
                ..consume_request("reasons", 1, &key)
            })
            .await,
            Code::InvalidArgument,
            "reason",
        );
        assert_refused(
            app.send_reserve(pb::ReserveCreditsRequest {
                reason: bad.into(),
                ..reserve_request("reasons", 1, &key)
            })
            .await,
            Code::InvalidArgument,
            "reason",
        );
    }
    // 64 characters, not bytes.
    let longest = "é".repeat(64);
    app.send_consume(pb::ConsumeCreditsRequest {
        reason: longest.clone(),
        ..consume_request("reasons", 1, "longest")
    })
    .await
    .expect("64 characters");
    assert_eq!(app.entries("reasons").await[0].reason, longest);
}

#[tokio::test]
async fn metadata_is_at_most_twenty_keys_of_forty_characters_with_values_of_five_hundred() {
    let app = spawn_app().await;
    funded(&app, "meta").await;
    let (fine, bad) = metadata_cases();
    for (n, metadata) in bad.into_iter().enumerate() {
        let key = format!("bad-{n}");
        assert_refused(
            app.send_grant(pb::GrantCreditsRequest {
                metadata: metadata.clone(),
                ..grant_request("meta", 1, &key)
            })
            .await,
            Code::InvalidArgument,
            "metadata",
        );
        assert_refused(
            app.send_consume(pb::ConsumeCreditsRequest {
                metadata: metadata.clone(),
                ..consume_request("meta", 1, &key)
            })
            .await,
            Code::InvalidArgument,
            "metadata",
        );
        assert_refused(
            app.send_reserve(pb::ReserveCreditsRequest {
                metadata: metadata.clone(),
                ..reserve_request("meta", 1, &key)
            })
            .await,
            Code::InvalidArgument,
            "metadata",
        );
        let hold = app
            .reserve("meta", 1, &format!("hold-{n}"), 60)
            .await
            .expect("reserve");
        assert_refused(
            app.grpc
                .clone()
                .capture_hold(pb::CaptureHoldRequest {
                    hold_id: hold.hold_id,
                    credits: 1,
                    metadata,
                })
                .await,
            Code::InvalidArgument,
            "metadata",
        );
    }
    for (n, metadata) in fine.into_iter().enumerate() {
        let consumed = app
            .send_consume(pb::ConsumeCreditsRequest {
                metadata: metadata.clone(),
                ..consume_request("meta", 1, &format!("fine-{n}"))
            })
            .await
            .expect("at the limits");
        let entry = app
            .entries("meta")
            .await
            .into_iter()
            .find(|e| e.id == consumed.ledger_entry_id)
            .expect("the entry");
        assert_eq!(entry.metadata, metadata, "kept as given");
    }
}

#[tokio::test]
async fn idempotency_keys_are_one_to_two_hundred_fifty_five_bytes() {
    let app = spawn_app().await;
    funded(&app, "keys").await;
    let too_long = "k".repeat(256);
    for bad in ["", "  ", too_long.as_str(), "new\nline"] {
        assert_refused(
            app.send_grant(grant_request("keys", 1, bad)).await,
            Code::InvalidArgument,
            "idempotency_key",
        );
        assert_refused(
            app.consume("keys", 1, bad).await,
            Code::InvalidArgument,
            "idempotency_key",
        );
        assert_refused(
            app.reserve("keys", 1, bad, 60).await,
            Code::InvalidArgument,
            "idempotency_key",
        );
    }
    // 255 bytes, multi-byte characters counted as bytes.
    let longest = format!("{}{}", "é".repeat(127), "k");
    assert_eq!(longest.len(), 255);
    app.consume("keys", 1, &longest).await.expect("255 bytes");
    assert!(app.consume("keys", 1, &longest).await.expect("again").replayed);
    assert_refused(
        app.consume("keys", 1, &format!("{longest}k")).await,
        Code::InvalidArgument,
        "idempotency_key",
    );
    assert_eq!(app.entries("keys").await.len(), 2);
}

#[tokio::test]
async fn ttl_seconds_ranges_from_one_to_a_day_and_defaults_to_three_hundred() {
    let app = spawn_app().await;
    funded(&app, "ttl").await;
    for bad in [-1, 86_401, i32::MAX, i32::MIN] {
        assert_refused(
            app.reserve("ttl", 1, &format!("bad{bad}"), bad).await,
            Code::InvalidArgument,
            "ttl_seconds",
        );
    }
    for (ttl, expected) in [(0, 300), (1, 1), (86_400, 86_400)] {
        let before = Utc::now();
        let hold = app
            .reserve("ttl", 1, &format!("ttl{ttl}"), ttl)
            .await
            .expect("reserve");
        let lasts = (time_of(hold.expires_at.as_ref().expect("expires_at")) - before).num_seconds();
        assert!(
            (expected - 1..=expected).contains(&lasts),
            "ttl {ttl}: lasts {lasts} s"
        );
    }
}

#[tokio::test]
async fn expires_at_must_be_a_valid_time_in_the_future() {
    let app = spawn_app().await;
    funded(&app, "when").await;
    let past = timestamp(Utc::now() - chrono::Duration::minutes(5));
    let nonsense = prost_types::Timestamp {
        seconds: 0,
        nanos: -1,
    };
    for bad in [past, nonsense] {
        assert_refused(
            app.send_grant(pb::GrantCreditsRequest {
                expires_at: Some(bad),
                ..grant_request("when", 10, "when")
            })
            .await,
            Code::InvalidArgument,
            "expires_at",
        );
    }
    assert_eq!(app.entries("when").await.len(), 1);
}

#[tokio::test]
async fn the_account_must_be_named_well_and_exist() {
    let app = spawn_app().await;
    let none = pb::ConsumeCreditsRequest {
        account: None,
        ..consume_request("", 1, "k")
    };
    assert_refused(app.send_consume(none).await, Code::InvalidArgument, "account");
    let bad_email = pb::GrantCreditsRequest {
        account: Some(pb::grant_credits_request::Account::Email("not-an-email".into())),
        ..grant_request("", 1, "k")
    };
    assert_refused(app.send_grant(bad_email).await, Code::InvalidArgument, "email");
    let empty_id = pb::ReserveCreditsRequest {
        account: Some(pb::reserve_credits_request::Account::AccountId(" ".into())),
        ..reserve_request("", 1, "k")
    };
    assert_refused(
        app.send_reserve(empty_id).await,
        Code::InvalidArgument,
        "account_id",
    );

    assert_refused(
        app.send_grant(grant_request("ghost", 1, "k")).await,
        Code::NotFound,
        "ghost",
    );
    assert_refused(app.consume("ghost", 1, "k").await, Code::NotFound, "ghost");
    assert_refused(app.reserve("ghost", 1, "k", 0).await, Code::NotFound, "ghost");
    for listing in [
        app.grpc
            .clone()
            .list_ledger_entries(pb::ListLedgerEntriesRequest {
                account: Some(pb::list_ledger_entries_request::Account::AccountId(
                    "ghost".into(),
                )),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        app.grpc
            .clone()
            .list_credit_lots(pb::ListCreditLotsRequest {
                account: Some(pb::list_credit_lots_request::Account::AccountId("ghost".into())),
                include_spent: false,
                as_of: None,
            })
            .await
            .map(|_| ()),
    ] {
        assert_refused(listing, Code::NotFound, "ghost");
    }

    // EnsureAccount: an id and an email.
    assert_refused(
        app.ensure_with("", "a@example.com").await,
        Code::InvalidArgument,
        "account_id",
    );
    assert_refused(
        app.ensure_with("someone", "nope").await,
        Code::InvalidArgument,
        "email",
    );
    // Holds: an id.
    assert_refused(app.capture("", 1).await, Code::InvalidArgument, "hold_id");
    assert_refused(app.release(" ").await, Code::InvalidArgument, "hold_id");
}

#[tokio::test]
async fn ledger_pages_refuse_a_negative_size_and_a_foreign_token() {
    let app = spawn_app().await;
    app.ensure("pager").await;
    let list = |page_size: i32, page_token: &str| {
        let mut grpc = app.grpc.clone();
        let request = pb::ListLedgerEntriesRequest {
            account: Some(pb::list_ledger_entries_request::Account::AccountId(
                "pager".into(),
            )),
            page_size,
            page_token: page_token.into(),
        };
        async move { grpc.list_ledger_entries(request).await.map(|_| ()) }
    };
    assert_refused(list(-1, "").await, Code::InvalidArgument, "page_size");
    assert_refused(list(10, "not-a-token").await, Code::InvalidArgument, "page_token");
    // A ListPurchases token is not a ListLedgerEntries token.
    let purchases_token = hex::encode("purchases.v1:0190aaaa-0000-7000-8000-000000000000");
    assert_refused(
        list(10, &purchases_token).await,
        Code::InvalidArgument,
        "page_token",
    );
}
