//! Holds over gRPC: reserve, capture, release.

use credits::grpc::pb;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_captured_hold_debits_what_was_captured_and_releases_the_rest() {
    let app = spawn_app().await;
    let mut grpc = app.grpc.clone();
    grpc.ensure_account(pb::EnsureAccountRequest {
        account_id: "acct-hold".into(),
        email: "hold@example.com".into(),
    })
    .await
    .expect("EnsureAccount");
    grpc.grant_credits(pb::GrantCreditsRequest {
        account: Some(pb::grant_credits_request::Account::AccountId("acct-hold".into())),
        credits: 100,
        idempotency_key: "fund".into(),
        reason: "support".into(),
        ..Default::default()
    })
    .await
    .expect("grant");
    let hold = grpc
        .reserve_credits(pb::ReserveCreditsRequest {
            account: Some(pb::reserve_credits_request::Account::AccountId(
                "acct-hold".into(),
            )),
            credits: 30,
            idempotency_key: "call-1".into(),
            reason: "call".into(),
            ..Default::default()
        })
        .await
        .expect("reserve")
        .into_inner();
    assert_eq!(hold.available_balance, 70);

    let captured = grpc
        .capture_hold(pb::CaptureHoldRequest {
            hold_id: hold.hold_id.clone(),
            credits: 12,
            ..Default::default()
        })
        .await
        .expect("capture")
        .into_inner();
    assert_eq!(
        (
            captured.credit_balance,
            captured.available_balance,
            captured.released_credits
        ),
        (88, 88, 18)
    );
    assert!(!captured.replayed);

    let again = grpc
        .capture_hold(pb::CaptureHoldRequest {
            hold_id: hold.hold_id.clone(),
            credits: 12,
            ..Default::default()
        })
        .await
        .expect("capture again")
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.ledger_entry_id, captured.ledger_entry_id);

    let ledger = app.ledger_of("acct-hold").await;
    let entry = ledger
        .iter()
        .find(|e| e.id.to_string() == captured.ledger_entry_id)
        .expect("the capture's entry");
    assert_eq!(
        (entry.delta, entry.reference.as_str()),
        (-12, format!("hold:{}", hold.hold_id).as_str())
    );
    app.assert_ledger_matches_balances().await;
}
