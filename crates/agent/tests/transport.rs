//! What the agent sends where, and what it reads: no redirect is followed
//! (the one-time token never leaves for another host), plain http is
//! refused, and an answer larger than the limit is a clear error that
//! costs nothing.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::ConnectionState;
use compass_sim::{Endpoint, Fault, FaultKind, FaultTimes};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use tokio::io::AsyncReadExt;

/// A plain-http listener that answers nothing and keeps every byte it is sent.
struct Eavesdropper {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl Eavesdropper {
    async fn start() -> Eavesdropper {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (bytes, count) = (received.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                *count.lock().unwrap() += 1;
                let bytes = bytes.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        bytes.lock().unwrap().extend_from_slice(&buffer[..n]);
                    }
                });
            }
        });
        Eavesdropper {
            port,
            received,
            connections,
        }
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    fn heard(&self, secret: &str) -> bool {
        String::from_utf8_lossy(&self.received.lock().unwrap()).contains(secret)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_plain_http_is_not_followed_and_the_token_stays_home() {
    let mut world = World::new().await;
    let listener = Eavesdropper::start().await;
    world.sim.inject(Fault {
        endpoint: Some(Endpoint::ConnectorToken),
        ..Fault::new(
            "configuration",
            FaultKind::RedirectToHttp {
                port: listener.port,
            },
            FaultTimes::UntilCleared,
        )
    });
    let token = world.configure_with_fresh_token().await;
    world.start_agent().await;
    let failed = world
        .wait_for_connection("the redirect reported", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::ConnectionFailed
                    && s.connection_status.error.contains("redirect")
            })
        })
        .await;
    eprintln!(
        "status after the redirect: {}",
        failed.status.unwrap().connection_status.error
    );
    assert_eq!(listener.connections(), 0, "the redirect was followed");
    assert!(!listener.heard(&token), "the token went to the other host");
    // The token was not spent on the way: once the redirect stops, it connects.
    world.sim.clear_faults();
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(listener.connections(), 0);
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_connector_url_is_refused_unless_allowed() {
    let mut world = World::new().await;
    let listener = Eavesdropper::start().await;
    let token = world.sim.issue_token(RUNTIME_ID).unwrap();
    let mut values = world.config_values(&token);
    values.insert(
        "CONNECTOR_URL".into(),
        format!("http://127.0.0.1:{}/connector/graphql", listener.port),
    );
    world.write_config_secret(values).await;
    world.start_agent().await;
    let failed = world
        .wait_for_connection("the http URL refused", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::ConnectionFailed
                    && s.connection_status.error.contains("APP_COMPASS_ALLOW_HTTP")
            })
        })
        .await;
    eprintln!(
        "status for an http URL: {}",
        failed.status.unwrap().connection_status.error
    );
    assert_eq!(listener.connections(), 0, "plain http was used");
    assert!(!listener.heard(&token));
    world.stop_agent().await;

    // Allowed for development: the agent does go there.
    world.settings.compass_allow_http = true;
    world.start_agent().await;
    let deadline = tokio::time::Instant::now() + LONG;
    while !listener.heard(&token) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "with APP_COMPASS_ALLOW_HTTP the agent did not use the http URL"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_above_the_size_limit_fails_the_sync_and_keeps_the_applications() {
    let mut world = World::new().await;
    world.settings.compass_max_response_size = 1024 * 1024;
    world.configure_with_fresh_token().await;
    world
        .sim
        .set_applications(
            RUNTIME_ID,
            compass_sim::model::generate_applications(3, 1, 1, 1),
        )
        .unwrap();
    world.start_agent().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let applications = Api::<Application>::all(world.client.clone());
    let uids = || async {
        applications
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|a| (a.name_any(), a.uid().unwrap()))
            .collect::<Vec<_>>()
    };
    let before = uids().await;
    assert_eq!(before.len(), 3);
    world.sim.inject_fault(
        "applicationsForRuntime",
        FaultKind::Oversized { megabytes: 3 },
        FaultTimes::UntilCleared,
    );
    let failed = world
        .wait_for_connection("the size limit reported", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::SynchronizationFailed
                    && s.synchronization_status
                        .as_ref()
                        .is_some_and(|s| s.error.contains("APP_COMPASS_MAX_RESPONSE_SIZE"))
            })
        })
        .await;
    eprintln!(
        "status for an oversized answer: {}",
        failed.status.unwrap().synchronization_status.unwrap().error
    );
    assert_eq!(uids().await, before, "the Applications are kept");
    world.sim.clear_faults();
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(uids().await, before);
    world.stop_agent().await;
}
