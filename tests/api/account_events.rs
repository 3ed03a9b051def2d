//! Account events through the real interfaces: each change writes its event once, in the
//! change's transaction, with where the change left the account (`balance_after`,
//! `available_after`) and the ledger entry it came from; redelivered webhooks and replayed keys
//! write nothing more; balance alerts fire once per crossing; ListAccountEvents pages by
//! cursor and refuses what it cannot serve.

use std::time::Duration;

use chrono::Utc;
use credits::grpc::pb;
use tonic::Code;

use crate::helpers::{
    TestApp,
    events::{count, list_request, payload, types},
    spawn_app,
    spend::{Paid, assert_refused, completed_event, dispute_event, refunded_event},
};

/// The id of the account's only ledger entry of `kind`.
async fn entry_id(app: &TestApp, account: &str, kind: &str) -> i64 {
    let entries: Vec<pb::LedgerEntry> = app
        .entries(account)
        .await
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect();
    assert_eq!(entries.len(), 1, "{account} has one {kind} entry: {entries:?}");
    entries[0].id.parse().expect("entry ids are numbers")
}

fn the<'a>(events: &'a [pb::AccountEvent], kind: &str) -> &'a pb::AccountEvent {
    let found: Vec<&pb::AccountEvent> = events.iter().filter(|e| e.r#type == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}: {:?}", types(events));
    found[0]
}

#[tokio::test]
async fn a_purchase_a_grant_and_a_refund_each_write_their_event_once_however_often_they_are_delivered() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.ensure("buyer").await;
    assert!(
        app.account_events("buyer").await.is_empty(),
        "opening an account is no event"
    );

    // A signed checkout.session.completed, delivered three times and once more under another
    // event id for the same session.
    let paid: Paid = app.buy_standard("buyer", "events").await;
    app.deliver(&completed_event("evt_paid_events", &paid, "buyer"))
        .await;
    app.deliver(&completed_event("evt_paid_events", &paid, "buyer"))
        .await;
    app.deliver(&completed_event("evt_paid_events_copy", &paid, "buyer"))
        .await;
    assert_eq!(app.credit_balance("buyer").await, 1000);
    let events = app.account_events("buyer").await;
    assert_eq!(types(&events), ["credits.purchased"]);
    let purchased = &events[0];
    assert_eq!(purchased.account_id, "buyer");
    assert!(purchased.id.starts_with("evt_"), "{}", purchased.id);
    assert_eq!((purchased.balance_after, purchased.available_after), (1000, 1000));
    assert_eq!(purchased.entry_id, entry_id(&app, "buyer", "purchase").await);
    let body = payload(purchased);
    assert_eq!(body["credits"], 1000);
    assert_eq!(body["reference"], paid.session.as_str());
    assert_eq!(body["source"], "purchase");
    let lots = app.lots("buyer", true).await;
    assert_eq!(body["lot_id"], lots[0].id.as_str());

    // A grant, then its key again: one event.
    let granted = app.grant("buyer", 50, "g1").await;
    let again = app.grant("buyer", 50, "g1").await;
    assert!(again.replayed);
    // Consumption writes no event unless ACCOUNT_EVENTS_CONSUMED is on.
    let consumed = app.consume("buyer", 30, "c1").await.expect("consume");
    assert_eq!(consumed.credit_balance, 1020);

    // A full refund of the purchase, redelivered, and a copy under another event id.
    let refund = refunded_event("evt_refund_events", &paid, 1500);
    app.deliver(&refund).await;
    app.deliver(&refund).await;
    app.deliver(&refunded_event("evt_refund_events_copy", &paid, 1500))
        .await;
    assert_eq!(app.credit_balance("buyer").await, 20);

    let events = app.account_events("buyer").await;
    assert_eq!(
        types(&events),
        ["credits.purchased", "credits.granted", "credits.clawed_back"],
        "each cause once, in the order of the changes"
    );
    let grant = the(&events, "credits.granted");
    assert_eq!(grant.entry_id.to_string(), granted.ledger_entry_id);
    assert_eq!((grant.balance_after, grant.available_after), (1050, 1050));
    let body = payload(grant);
    assert_eq!(
        (body["credits"].as_i64(), body["reason"].as_str()),
        (Some(50), Some("support"))
    );
    assert_eq!(body["reference"], "g1");
    assert_eq!(body["lot_id"], granted.lot_id.as_str());
    assert_eq!(body["source"], "grant");

    let clawed = the(&events, "credits.clawed_back");
    assert_eq!(clawed.entry_id, entry_id(&app, "buyer", "refund").await);
    assert_eq!((clawed.balance_after, clawed.available_after), (20, 20));
    let body = payload(clawed);
    assert_eq!(
        (body["credits"].as_i64(), body["reason"].as_str()),
        (Some(1000), Some("refund"))
    );
    assert!(
        events.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "sequences increase"
    );
    // The same ids on every read.
    let reread = app.account_events("buyer").await;
    assert_eq!(reread, events);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn consumption_and_captures_write_credits_consumed_only_when_asked_to() {
    let app = TestApp::builder()
        .env("ACCOUNT_EVENTS_CONSUMED", "true")
        .spawn()
        .await;
    app.ensure("spender").await;
    app.grant("spender", 100, "fund").await;
    let first = app.consume("spender", 10, "c1").await.expect("consume");
    let replay = app.consume("spender", 10, "c1").await.expect("replay");
    assert!(replay.replayed);
    let second = app.consume("spender", 5, "c2").await.expect("consume");
    let hold = app.reserve("spender", 40, "h1", 60).await.expect("reserve");
    let captured = app.capture(&hold.hold_id, 25).await.expect("capture");
    // A refused debit writes nothing.
    assert_refused(
        app.consume("spender", 1000, "too-much").await,
        Code::FailedPrecondition,
        "not enough credits",
    );

    let events = app.account_events("spender").await;
    assert_eq!(
        types(&events),
        [
            "credits.granted",
            "credits.consumed",
            "credits.consumed",
            "credits.consumed"
        ]
    );
    let consumed: Vec<&pb::AccountEvent> = events[1..].iter().collect();
    for (event, (credits, entry, balance, available)) in consumed.iter().zip([
        (
            10,
            &first.ledger_entry_id,
            first.credit_balance,
            first.available_balance,
        ),
        (
            5,
            &second.ledger_entry_id,
            second.credit_balance,
            second.available_balance,
        ),
        (
            25,
            &captured.ledger_entry_id,
            captured.credit_balance,
            captured.available_balance,
        ),
    ]) {
        assert_eq!(&event.entry_id.to_string(), entry);
        assert_eq!((event.balance_after, event.available_after), (balance, available));
        assert_eq!(payload(event)["credits"], credits);
    }
    assert_eq!((captured.credit_balance, captured.available_balance), (60, 60));

    // Without the setting the same calls write no credits.consumed.
    let quiet = spawn_app().await;
    quiet.ensure("spender").await;
    quiet.grant("spender", 100, "fund").await;
    quiet.consume("spender", 10, "c1").await.expect("consume");
    let hold = quiet.reserve("spender", 40, "h1", 60).await.expect("reserve");
    quiet.capture(&hold.hold_id, 25).await.expect("capture");
    assert_eq!(types(&quiet.account_events("spender").await), ["credits.granted"]);
}

#[tokio::test]
async fn an_expiring_lot_and_a_lapsed_hold_each_write_one_event_from_the_sweep() {
    let app = TestApp::builder().env("EXPIRY_INTERVAL", "1s").spawn().await;
    // A lot of 40 that expires in two seconds next to 100 that never do.
    app.ensure("expiring").await;
    let lot = app
        .grant_expiring("expiring", 40, "short", Utc::now() + chrono::Duration::seconds(2))
        .await;
    app.grant("expiring", 100, "forever").await;
    // A hold of 30 of 100 for one second.
    app.ensure("holding").await;
    app.grant("holding", 100, "fund").await;
    let hold = app.reserve("holding", 30, "h1", 1).await.expect("reserve");
    assert_eq!(hold.available_balance, 70);

    let events = app.until_events("expiring", &["lot.expired"]).await;
    let holds = app.until_events("holding", &["hold.expired"]).await;
    // More sweeps run: still one of each.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let events_later = app.account_events("expiring").await;
    assert_eq!(events_later, events);
    assert_eq!(
        types(&events),
        ["credits.granted", "credits.granted", "lot.expired"]
    );
    let expired = the(&events, "lot.expired");
    assert_eq!(expired.entry_id, entry_id(&app, "expiring", "expiry").await);
    assert_eq!((expired.balance_after, expired.available_after), (100, 100));
    let body = payload(expired);
    assert_eq!(body["credits"], 40);
    assert_eq!(body["lot_id"], lot.lot_id.as_str());

    let holds_later = app.account_events("holding").await;
    assert_eq!(holds_later, holds);
    assert_eq!(types(&holds), ["credits.granted", "hold.expired"]);
    let lapsed = the(&holds, "hold.expired");
    assert_eq!(lapsed.entry_id, 0, "a hold has no entry");
    assert_eq!((lapsed.balance_after, lapsed.available_after), (100, 100));
    let body = payload(lapsed);
    assert_eq!(body["hold_id"], hold.hold_id.as_str());
    assert_eq!(body["credits"], 30);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn balance_alerts_fire_once_per_crossing_of_the_threshold() {
    let app = spawn_app().await;
    app.ensure("alerts").await;
    app.grant("alerts", 300, "g1").await;
    let set = app.set_threshold("alerts", 100).await;
    assert_eq!(
        (set.low_balance_threshold, set.low_balance_threshold_is_default),
        (100, false)
    );
    let start = app.account_events("alerts").await;
    assert_eq!(types(&start), ["credits.granted", "settings.changed"]);
    let after = start.last().map_or(0, |e| e.sequence);

    let step = |credits: i64, key: &'static str| {
        let app = &app;
        async move { app.consume("alerts", credits, key).await.expect("consume") }
    };
    // An alert names the entry of the change that crossed (a hold has none: 0).
    let entry = |id: &str| id.parse::<i64>().expect("an entry id");
    step(150, "c1").await; // 300 → 150: above
    let c2 = entry(&step(100, "c2").await.ledger_entry_id); // → 50: low
    step(20, "c3").await; // → 30: still low
    let c4 = entry(&step(30, "c4").await.ledger_entry_id); // → 0: depleted
    let g2 = entry(&app.grant("alerts", 200, "g2").await.ledger_entry_id); // → 200: recovered
    let c5 = entry(&step(200, "c5").await.ledger_entry_id); // → 0 from above: low and depleted
    let g3 = entry(&app.grant("alerts", 150, "g3").await.ledger_entry_id); // → 150: recovered
    let hold = app.reserve("alerts", 100, "h1", 60).await.expect("reserve"); // available 50: low
    app.release(&hold.hold_id).await.expect("release"); // available 150: recovered

    let events = app.events_after("alerts", after).await;
    assert_eq!(
        types(&events),
        [
            "balance.low",
            "balance.depleted",
            "credits.granted",
            "balance.recovered",
            "balance.low",
            "balance.depleted",
            "credits.granted",
            "balance.recovered",
            "balance.low",
            "balance.recovered",
        ]
    );
    fn shape(e: &pb::AccountEvent) -> (&str, i64, i64, i64, Option<i64>, Option<i64>) {
        let body = payload(e);
        (
            e.r#type.as_str(),
            e.balance_after,
            e.available_after,
            e.entry_id,
            body["threshold"].as_i64(),
            body["available_before"].as_i64(),
        )
    }
    let alerts: Vec<_> = events
        .iter()
        .filter(|e| e.r#type.starts_with("balance."))
        .map(shape)
        .collect();
    assert_eq!(
        alerts,
        [
            ("balance.low", 50, 50, c2, Some(100), Some(150)),
            ("balance.depleted", 0, 0, c4, Some(100), Some(30)),
            ("balance.recovered", 200, 200, g2, Some(100), Some(0)),
            ("balance.low", 0, 0, c5, Some(100), Some(200)),
            ("balance.depleted", 0, 0, c5, Some(100), Some(200)),
            ("balance.recovered", 150, 150, g3, Some(100), Some(0)),
            ("balance.low", 150, 50, 0, Some(100), Some(150)),
            ("balance.recovered", 150, 150, 0, Some(100), Some(50)),
        ]
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_new_account_sets_its_level_with_its_first_change_without_an_alert() {
    let app = TestApp::builder()
        .env("LOW_BALANCE_THRESHOLD", "100")
        .spawn()
        .await;
    app.ensure("fresh").await;
    let shown = app
        .grpc
        .clone()
        .get_account_settings(pb::GetAccountSettingsRequest {
            account: Some(pb::get_account_settings_request::Account::AccountId(
                "fresh".into(),
            )),
        })
        .await
        .expect("GetAccountSettings")
        .into_inner();
    assert_eq!(
        (
            shown.low_balance_threshold,
            shown.low_balance_threshold_is_default
        ),
        (100, true)
    );
    app.grant("fresh", 300, "g1").await;
    app.consume("fresh", 250, "c1").await.expect("consume");
    let events = app.account_events("fresh").await;
    assert_eq!(
        types(&events),
        ["credits.granted", "balance.low"],
        "the first credit sets the level; the default threshold applies"
    );
    // Setting a threshold moves no balance: the first credit after it still sets the level.
    app.ensure("configured").await;
    app.set_threshold("configured", 50).await;
    app.grant("configured", 300, "g1").await;
    assert_eq!(
        types(&app.account_events("configured").await),
        ["settings.changed", "credits.granted"]
    );
}

#[tokio::test]
async fn list_account_events_pages_by_cursor_for_one_account_or_all() {
    let app = spawn_app().await;
    app.ensure("paged").await;
    app.ensure("other").await;
    for n in 0..25 {
        app.grant("paged", 1, &format!("p{n}")).await;
        if n % 5 == 0 {
            app.grant("other", 1, &format!("o{n}")).await;
        }
    }
    let all = app.account_events("paged").await;
    assert_eq!(all.len(), 25);
    assert!(all.iter().all(|e| e.account_id == "paged"));

    // Pages of 10: 10, 10, 5, then an empty page that keeps the cursor.
    let mut seen = Vec::new();
    let mut cursor = 0;
    let mut sizes = Vec::new();
    loop {
        let page = app
            .list_events(list_request("paged", cursor, 10))
            .await
            .expect("list");
        sizes.push(page.events.len());
        if page.events.is_empty() {
            assert_eq!(page.next_after_sequence, cursor);
            break;
        }
        assert_eq!(
            page.next_after_sequence,
            page.events.last().expect("an event").sequence
        );
        assert!(page.events.iter().all(|e| e.sequence > cursor));
        cursor = page.next_after_sequence;
        seen.extend(page.events);
    }
    assert_eq!(sizes, [10, 10, 5, 0]);
    assert_eq!(seen, all, "the pages together are the whole list, in order");

    // From the middle: what follows the cursor.
    let middle = all[11].sequence;
    let rest = app
        .list_events(list_request("paged", middle, 0))
        .await
        .expect("list");
    assert_eq!(rest.events, all[12..].to_vec());

    // Every account: both accounts' events, interleaved in sequence order.
    let everyone = app.events_after("", 0).await;
    assert_eq!(everyone.len(), 30);
    assert!(everyone.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!(count(&everyone, "credits.granted"), 30);
    let mine: Vec<pb::AccountEvent> = everyone
        .iter()
        .filter(|e| e.account_id == "paged")
        .cloned()
        .collect();
    assert_eq!(mine, all);

    // page_size 0 is 100.
    for n in 0..80 {
        app.grant("other", 1, &format!("more{n}")).await;
    }
    let default = app.list_events(list_request("", 0, 0)).await.expect("list");
    assert_eq!(default.events.len(), 100);
    let biggest = app.list_events(list_request("", 0, 1000)).await.expect("list");
    assert_eq!(biggest.events.len(), 110);
}

#[tokio::test]
async fn list_and_watch_refuse_what_they_cannot_serve() {
    let app = spawn_app().await;
    app.ensure("valid").await;
    app.grant("valid", 10, "g").await;
    for size in [-1, 1001, i32::MAX, i32::MIN] {
        assert_refused(
            app.list_events(list_request("valid", 0, size)).await,
            Code::InvalidArgument,
            "page_size",
        );
    }
    assert_refused(
        app.list_events(list_request("valid", -1, 10)).await,
        Code::InvalidArgument,
        "after_sequence",
    );
    let too_long = "a".repeat(256);
    assert_refused(
        app.list_events(list_request(&too_long, 0, 10)).await,
        Code::InvalidArgument,
        "account_id",
    );
    // An account that does not exist has no events: an empty page, not an error.
    let unknown = app
        .list_events(list_request("nobody", 7, 10))
        .await
        .expect("list");
    assert!(unknown.events.is_empty());
    assert_eq!(unknown.next_after_sequence, 7);
    // The limits themselves are accepted.
    for size in [1, 1000] {
        app.list_events(list_request("valid", 0, size))
            .await
            .expect("in range");
    }

    let watch = |account: &str, after: i64| {
        let mut grpc = app.grpc.clone();
        let request = pb::WatchAccountEventsRequest {
            account_id: account.into(),
            after_sequence: after,
        };
        async move { grpc.watch_account_events(request).await.map(|_| ()) }
    };
    assert_refused(watch("valid", -1).await, Code::InvalidArgument, "after_sequence");
    assert_refused(watch(&too_long, 0).await, Code::InvalidArgument, "account_id");
}

#[tokio::test]
async fn a_dispute_claws_back_once_and_a_won_one_restores_once() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.ensure("disputed").await;
    let paid = app.buy_standard("disputed", "disputed").await;
    let opened = dispute_event("evt_dp_open", &paid, "charge.dispute.created", "needs_response");
    app.deliver(&opened).await;
    app.deliver(&opened).await;
    app.deliver(&dispute_event(
        "evt_dp_update",
        &paid,
        "charge.dispute.updated",
        "under_review",
    ))
    .await;
    let won = dispute_event("evt_dp_won", &paid, "charge.dispute.closed", "won");
    app.deliver(&won).await;
    app.deliver(&won).await;
    assert_eq!(app.credit_balance("disputed").await, 1000);

    let events = app.account_events("disputed").await;
    assert_eq!(
        types(&events),
        ["credits.purchased", "credits.clawed_back", "credits.restored"]
    );
    let entries: Vec<pb::LedgerEntry> = app
        .entries("disputed")
        .await
        .into_iter()
        .filter(|e| e.kind == "dispute")
        .collect();
    // Newest first.
    let (restore_entry, claw_entry) = (&entries[0], &entries[1]);
    let clawed = &events[1];
    assert_eq!(clawed.entry_id.to_string(), claw_entry.id);
    assert_eq!((clawed.balance_after, clawed.available_after), (0, 0));
    let body = payload(clawed);
    assert_eq!(
        (body["credits"].as_i64(), body["reason"].as_str()),
        (Some(1000), Some("dispute"))
    );
    let restored = &events[2];
    assert_eq!(restored.entry_id.to_string(), restore_entry.id);
    assert_eq!((restored.balance_after, restored.available_after), (1000, 1000));
    assert_eq!(payload(restored)["credits"], 1000);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn without_a_sweep_the_next_change_writes_what_ran_out_before_its_own_event() {
    // The sweep is an hour away: only the next change can notice.
    let app = TestApp::builder()
        .env("EXPIRY_INTERVAL", "1h")
        .env("ACCOUNT_EVENTS_CONSUMED", "true")
        .spawn()
        .await;
    app.ensure("lazy").await;
    let lot = app
        .grant_expiring("lazy", 40, "short", Utc::now() + chrono::Duration::seconds(1))
        .await;
    app.grant("lazy", 100, "forever").await;
    let hold = app.reserve("lazy", 30, "h1", 1).await.expect("reserve");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        types(&app.account_events("lazy").await),
        ["credits.granted", "credits.granted"],
        "nothing is written by time alone"
    );
    let consumed = app.consume("lazy", 10, "c1").await.expect("consume");
    assert_eq!((consumed.credit_balance, consumed.available_balance), (90, 90));
    app.consume("lazy", 10, "c2").await.expect("consume");

    let events = app.account_events("lazy").await;
    assert_eq!(
        types(&events),
        [
            "credits.granted",
            "credits.granted",
            "hold.expired",
            "lot.expired",
            "credits.consumed",
            "credits.consumed"
        ],
        "each once, in the order they were applied"
    );
    assert_eq!(payload(&events[2])["hold_id"], hold.hold_id.as_str());
    assert_eq!(payload(&events[3])["lot_id"], lot.lot_id.as_str());
    assert_eq!((events[3].balance_after, events[3].available_after), (100, 100));
    assert_eq!(events[4].entry_id.to_string(), consumed.ledger_entry_id);
    assert_eq!((events[4].balance_after, events[4].available_after), (90, 90));
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_lot_running_out_or_a_hold_being_reserved_crosses_the_threshold_like_a_debit() {
    let app = TestApp::builder()
        .env("EXPIRY_INTERVAL", "1s")
        .env("LOW_BALANCE_THRESHOLD", "50")
        .spawn()
        .await;
    // 40 expiring + 30 forever = 70, above 50; the expiry leaves 30: low.
    app.ensure("ebbing").await;
    app.grant("ebbing", 30, "forever").await;
    app.grant_expiring("ebbing", 40, "short", Utc::now() + chrono::Duration::seconds(1))
        .await;
    let events = app.until_events("ebbing", &["lot.expired", "balance.low"]).await;
    assert_eq!(
        types(&events),
        [
            "credits.granted",   // 30: the first change sets the level (low), no alert
            "credits.granted",   // 70
            "balance.recovered", // from low to above
            "lot.expired",
            "balance.low"
        ]
    );
    let low = &events[4];
    assert_eq!(
        (low.balance_after, low.available_after, low.entry_id),
        (30, 30, events[3].entry_id),
        "named by the expiry's entry"
    );
    assert_ne!(low.entry_id, 0);
    assert_eq!(payload(low)["available_before"], 70);

    // A hold of 60 of 100 leaves 40 available: low; it running out: recovered.
    app.ensure("reserving").await;
    app.grant("reserving", 100, "fund").await;
    app.reserve("reserving", 60, "h1", 1).await.expect("reserve");
    let events = app
        .until_events("reserving", &["hold.expired", "balance.recovered"])
        .await;
    assert_eq!(
        types(&events),
        [
            "credits.granted",
            "balance.low",
            "hold.expired",
            "balance.recovered"
        ]
    );
    assert_eq!((events[1].balance_after, events[1].available_after), (100, 40));
    assert_eq!((events[3].balance_after, events[3].available_after), (100, 100));
}
