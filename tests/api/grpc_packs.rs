//! ListCreditPacks and loading packs from CREDIT_PACKS_FILE.

use credits::{app::Application, config::Settings, grpc::pb};
use sea_orm::EntityTrait;

use crate::helpers::{STANDARD_PRICE, TEST_PACKS, TestApp, spawn_app};

#[tokio::test]
async fn list_credit_packs_returns_active_packs_and_the_publishable_key() {
    let app = spawn_app().await;
    let response = app
        .grpc
        .clone()
        .list_credit_packs(pb::ListCreditPacksRequest {})
        .await
        .expect("ListCreditPacks")
        .into_inner();
    assert_eq!(response.stripe_publishable_key, "pk_test_credits");
    let ids: Vec<&str> = response.packs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["starter", "standard", "pro"], "cheapest first");
    let standard = &response.packs[1];
    assert_eq!(standard.name, "Standard");
    assert_eq!(standard.credits, 1000);
    assert_eq!(standard.unit_amount, 1500);
    assert_eq!(standard.currency, "usd");
    assert_eq!(standard.stripe_price_id, STANDARD_PRICE);
    assert_eq!(
        response.packs[2].stripe_price_id, "",
        "pro is not synced to Stripe yet"
    );
}

#[tokio::test]
async fn packs_removed_from_the_file_are_deactivated_and_changes_apply_on_restart() {
    let first = spawn_app().await;
    let db = first.db.clone();
    first.stop().await;

    let changed = TEST_PACKS
        .replace("name = \"Standard\"", "name = \"Standard Plus\"")
        .replace("[[pack]]\nid = \"pro\"", "[[pack]]\nid = \"max\"");
    let second = TestApp::builder().database(db).packs(&changed).spawn().await;
    let packs = second
        .grpc
        .clone()
        .list_credit_packs(pb::ListCreditPacksRequest {})
        .await
        .expect("ListCreditPacks")
        .into_inner()
        .packs;
    let names: Vec<(&str, &str)> = packs.iter().map(|p| (p.id.as_str(), p.name.as_str())).collect();
    assert_eq!(
        names,
        [
            ("starter", "Starter"),
            ("standard", "Standard Plus"),
            ("max", "Pro")
        ]
    );
}

#[tokio::test]
async fn a_malformed_packs_file_stops_start_up_naming_file_line_and_field() {
    let bad = TEST_PACKS.replace("credits = 1000", "credits = \"lots\"");
    let (env, _db, _stripe) = TestApp::builder().packs(&bad).prepare().await;
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("settings");
    let Err(err) = Application::build(settings).await else {
        panic!("start-up accepted a malformed packs file");
    };
    let message = err.to_string();
    let file = env.get("CREDIT_PACKS_FILE").expect("packs file set");
    assert!(message.contains(file.as_str()), "{message}");
    assert!(message.contains(":13:"), "line 13 named: {message}");
    assert!(message.contains("credits"), "field named: {message}");
}

#[tokio::test]
async fn swapping_pinned_price_ids_between_two_packs_starts_cleanly() {
    let first = spawn_app().await;
    let db = first.db.clone();
    first.stop().await;

    // starter and standard trade their pinned prices.
    let swapped = TEST_PACKS
        .replace(
            "stripe_price_id = \"price_starter_test\"",
            "stripe_price_id = \"PRICE_A\"",
        )
        .replace(
            &format!("stripe_price_id = \"{STANDARD_PRICE}\""),
            "stripe_price_id = \"price_starter_test\"",
        )
        .replace("PRICE_A", STANDARD_PRICE);
    for _restart in 0..2 {
        let app = TestApp::builder()
            .database(db.clone())
            .packs(&swapped)
            .spawn()
            .await;
        let packs = app
            .grpc
            .clone()
            .list_credit_packs(pb::ListCreditPacksRequest {})
            .await
            .expect("ListCreditPacks")
            .into_inner()
            .packs;
        let prices: Vec<(&str, &str)> = packs
            .iter()
            .map(|p| (p.id.as_str(), p.stripe_price_id.as_str()))
            .collect();
        assert_eq!(
            prices,
            [
                ("starter", STANDARD_PRICE),
                ("standard", "price_starter_test"),
                ("pro", "")
            ]
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_packs_file_that_cannot_be_stored_changes_nothing() {
    let first = spawn_app().await;
    let db = first.db.clone();
    first.stop().await;

    // The first pack's row is rewritten, then a later one fails: all or nothing.
    let renamed = TEST_PACKS.replace("name = \"Starter\"", "name = \"Starter Renamed\"");
    let conn = db.connect().await;
    let trigger = if db.url.starts_with("postgres") {
        "CREATE FUNCTION refuse_pro() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN IF NEW.id = 'pro' THEN RAISE EXCEPTION 'pro is frozen'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_pro BEFORE UPDATE ON credit_packs FOR EACH ROW EXECUTE FUNCTION refuse_pro()"
    } else {
        "CREATE TRIGGER refuse_pro BEFORE UPDATE ON credit_packs WHEN NEW.id = 'pro' \
         BEGIN SELECT RAISE(ABORT, 'pro is frozen'); END"
    };
    sea_orm::ConnectionTrait::execute_unprepared(&conn, trigger)
        .await
        .expect("trigger");
    let (env, _db, _stripe) = TestApp::builder()
        .database(db.clone())
        .packs(&renamed)
        .prepare()
        .await;
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("settings");
    assert!(
        Application::build(settings).await.is_err(),
        "start-up fails while a pack cannot be written"
    );
    let names: Vec<String> = credits::entities::credit_pack::Entity::find()
        .all(&conn)
        .await
        .expect("packs")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(names.contains(&"Starter".to_owned()), "{names:?}");
    assert!(!names.contains(&"Starter Renamed".to_owned()), "{names:?}");
}
