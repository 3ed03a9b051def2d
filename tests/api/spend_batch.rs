//! ConsumeCreditsBatch: up to 1,000 debits in one call, each with its own key and its own answer,
//! in order; one refused fails alone; racing batches never overdraw.

use credits::grpc::pb;
use tonic::Code;

use crate::helpers::{TestApp, spawn_app, spend::consume_request};

async fn batch(
    app: &TestApp,
    debits: Vec<pb::ConsumeCreditsRequest>,
) -> Result<Vec<pb::ConsumeCreditsResult>, tonic::Status> {
    app.grpc
        .clone()
        .consume_credits_batch(pb::ConsumeCreditsBatchRequest { debits })
        .await
        .map(|answer| answer.into_inner().results)
}

/// `Ok(balance after)` or `Err(code)` per debit.
fn outcomes(results: &[pb::ConsumeCreditsResult]) -> Vec<Result<(i64, bool), i32>> {
    results
        .iter()
        .map(|r| match &r.result {
            Some(pb::consume_credits_result::Result::Consumed(ok)) => Ok((ok.credit_balance, ok.replayed)),
            Some(pb::consume_credits_result::Result::Refused(no)) => Err(no.code),
            None => Err(-1),
        })
        .collect()
}

#[tokio::test]
async fn each_debit_of_a_batch_has_its_own_answer_in_order_and_a_refused_one_fails_alone() {
    let app = spawn_app().await;
    app.ensure("meter-a").await;
    app.ensure("meter-b").await;
    app.grant("meter-a", 100, "fund-a").await;
    app.grant("meter-b", 10, "fund-b").await;
    let results = batch(
        &app,
        vec![
            consume_request("meter-a", 30, "m1"),
            consume_request("meter-b", 50, "m2"),
            consume_request("meter-a", 20, ""),
            consume_request("meter-b", 10, "m3"),
            consume_request("meter-a", 30, "m1"),
            consume_request("nobody", 1, "m4"),
        ],
    )
    .await
    .expect("ConsumeCreditsBatch");
    assert_eq!(
        outcomes(&results),
        [
            Ok((70, false)),
            Err(Code::FailedPrecondition as i32),
            Err(Code::InvalidArgument as i32),
            Ok((0, false)),
            Ok((70, true)),
            Err(Code::NotFound as i32),
        ]
    );
    assert_eq!(app.credit_balance("meter-a").await, 70);
    assert_eq!(app.credit_balance("meter-b").await, 0);
    // The same batch again changes nothing: every accepted debit replays.
    let again = batch(
        &app,
        vec![
            consume_request("meter-a", 30, "m1"),
            consume_request("meter-b", 10, "m3"),
        ],
    )
    .await
    .expect("ConsumeCreditsBatch");
    assert_eq!(outcomes(&again), [Ok((70, true)), Ok((0, true))]);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn an_empty_batch_or_one_of_more_than_a_thousand_debits_is_invalid() {
    let app = spawn_app().await;
    app.ensure("meter").await;
    let empty = batch(&app, Vec::new()).await.expect_err("empty");
    assert_eq!(empty.code(), Code::InvalidArgument);
    let debits = (0..1001)
        .map(|n| consume_request("meter", 1, &format!("k{n}")))
        .collect();
    let big = batch(&app, debits).await.expect_err("1001 debits");
    assert_eq!(big.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn racing_batches_on_one_account_take_exactly_what_there_is_and_never_overdraw() {
    let app = spawn_app().await;
    for round in 0..5 {
        let account = format!("hot-{round}");
        app.ensure(&account).await;
        app.grant(&account, 500, &format!("fund-{round}")).await;
        let calls = (0..20).map(|caller| {
            let app = &app;
            let account = account.clone();
            async move {
                let debits = (0..50)
                    .map(|n| consume_request(&account, 1, &format!("r{round}-c{caller}-{n}")))
                    .collect();
                batch(app, debits).await.expect("ConsumeCreditsBatch")
            }
        });
        let answers = futures_util::future::join_all(calls).await;
        let accepted = answers
            .iter()
            .flat_map(|results| outcomes(results))
            .filter(|o| o.is_ok())
            .count();
        let refused = answers
            .iter()
            .flat_map(|results| outcomes(results))
            .filter(|o| *o == Err(Code::FailedPrecondition as i32))
            .count();
        assert_eq!((accepted, refused), (500, 500), "round {round}");
        assert_eq!(app.credit_balance(&account).await, 0, "round {round}");
    }
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_full_batch_goes_to_the_writer_whole_while_single_debits_and_its_own_repeat_race_it() {
    // A thousand debits over ten accounts: more than the writer's usual batch (256), queued as
    // one group. Single ConsumeCredits calls with the same keys, and the same batch sent again,
    // race it: every key debits once, whoever comes first, and the others replay it.
    let app = spawn_app().await;
    for round in 0..3 {
        let accounts: Vec<String> = (0..10).map(|n| format!("meter-{round}-{n}")).collect();
        for account in &accounts {
            app.ensure(account).await;
            app.grant(account, 150, &format!("fund-{account}")).await;
        }
        let debits: Vec<_> = (0..1000)
            .map(|n| consume_request(&accounts[n % 10], 1, &format!("full-{round}-{n}")))
            .collect();
        let singles = (0..1000).step_by(7).map(|n| {
            let (app, request) = (
                &app,
                consume_request(&accounts[n % 10], 1, &format!("full-{round}-{n}")),
            );
            async move {
                app.grpc
                    .clone()
                    .consume_credits(request)
                    .await
                    .expect("ConsumeCredits")
            }
        });
        let (first, second, singles) = tokio::join!(
            batch(&app, debits.clone()),
            batch(&app, debits),
            futures_util::future::join_all(singles)
        );
        let (first, second) = (first.expect("first batch"), second.expect("second batch"));
        assert_eq!((first.len(), second.len()), (1000, 1000));
        let first = outcomes(&first);
        let second = outcomes(&second);
        // Each key debited once: its two batch answers and any single call agree on the balance
        // it left, and at most one of them is not a replay.
        for n in 0..1000 {
            let (Ok((a, a_replayed)), Ok((b, b_replayed))) = (first[n], second[n]) else {
                panic!(
                    "round {round}: debit {n} refused: {:?} / {:?}",
                    first[n], second[n]
                );
            };
            assert_eq!(a, b, "round {round}: debit {n}");
            assert!(a_replayed || b_replayed, "round {round}: debit {n} applied twice");
        }
        let fresh_singles = singles.iter().filter(|s| !s.get_ref().replayed).count();
        let fresh_batches = (0..1000)
            .filter(|&n| !(first[n].expect("ok").1 && second[n].expect("ok").1))
            .count();
        assert_eq!(
            fresh_singles + fresh_batches,
            1000,
            "round {round}: one fresh answer per key"
        );
        for account in &accounts {
            assert_eq!(app.credit_balance(account).await, 50, "round {round}: {account}");
        }
    }
    app.assert_spend_invariants().await;
}
