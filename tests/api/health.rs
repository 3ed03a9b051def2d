//! Health: HTTP probes, the gRPC health service following the database, and reflection.

use std::time::Duration;

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::helpers::{grpc_channel, spawn_app};

async fn grpc_health(app: &crate::helpers::TestApp, service: &str) -> ServingStatus {
    let mut client = HealthClient::new(grpc_channel(app.grpc_addr).await);
    let response = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check answers");
    ServingStatus::try_from(response.into_inner().status).expect("known status")
}

async fn wait_for_health(app: &crate::helpers::TestApp, want: ServingStatus) -> bool {
    for _ in 0..100 {
        if grpc_health(app, "credits.v1.CreditsService").await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn healthz_and_readyz_answer_ok_when_the_database_is_up() {
    let app = spawn_app().await;
    let healthz = app.http.get(app.url("/healthz")).send().await.expect("healthz");
    assert_eq!(healthz.status(), 200);
    let readyz = app.http.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(readyz.status(), 200);
    assert!(wait_for_health(&app, ServingStatus::Serving).await);
    assert_eq!(grpc_health(&app, "").await, ServingStatus::Serving);
}

#[tokio::test]
async fn health_flips_to_not_serving_while_the_database_is_away_and_back_after() {
    let app = spawn_app().await;
    assert!(
        wait_for_health(&app, ServingStatus::Serving).await,
        "serving at start"
    );

    let outage = app.db.outage().await;
    assert!(
        wait_for_health(&app, ServingStatus::NotServing).await,
        "NOT_SERVING during the outage"
    );
    let readyz = app.http.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(readyz.status(), 503);
    let healthz = app.http.get(app.url("/healthz")).send().await.expect("healthz");
    assert_eq!(healthz.status(), 200, "liveness does not depend on the database");

    outage.end().await;
    assert!(
        wait_for_health(&app, ServingStatus::Serving).await,
        "SERVING again after the outage"
    );
    let readyz = app.http.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(readyz.status(), 200);
}

#[tokio::test]
async fn shutdown_turns_health_to_not_serving_first() {
    let app = spawn_app().await;
    assert!(wait_for_health(&app, ServingStatus::Serving).await);
    let mut client = HealthClient::new(grpc_channel(app.grpc_addr).await);
    let mut watch = client
        .watch(HealthCheckRequest {
            service: "credits.v1.CreditsService".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("stream").expect("first status");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    app.stop().await;
    // The watch stream outlives the drain (it never ends by itself); read what it was told.
    let update = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("an update arrives")
        .expect("stream open")
        .expect("an update");
    assert_eq!(
        update.status,
        ServingStatus::NotServing as i32,
        "watchers hear NOT_SERVING first"
    );
}

#[tokio::test]
async fn reflection_lists_every_service() {
    let app = spawn_app().await;
    let mut client = ServerReflectionClient::new(grpc_channel(app.grpc_addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = stream.message().await.expect("stream").expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list, got {:?}", response.message_response);
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "credits.v1.CreditsService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
}
