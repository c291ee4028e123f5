//! What the agent costs Compass: the Connector is asked only when its answer
//! matters (renewal due, `refreshCredentialsNow`, the Director refusing the
//! certificate, and otherwise once per `APP_CONNECTOR_CHECK_INTERVAL`), and
//! one mTLS client is kept for as long as the certificate stays, so an idle
//! cycle opens no new TLS connection. Counted where Compass sees them: in
//! compass-sim's request log and TLS listeners.

mod common;

use std::time::Duration;

use common::{World, LONG, SHORT};
use compass_runtime_agent::crd::{CompassConnection, ConnectionState, COMPASS_CONNECTION_NAME};
use compass_sim::{Endpoint, Fault, FaultKind, FaultTimes};
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// Asks for a cycle now and waits until it has been recorded.
async fn resync(world: &World) -> CompassConnection {
    let patched = world
        .connections()
        .patch(
            COMPASS_CONNECTION_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"resyncNow": true}})),
        )
        .await
        .unwrap();
    let generation = patched.metadata.generation.unwrap();
    world
        .wait_for_connection("a cycle for resyncNow", LONG, |c| {
            !c.spec.resync_now
                && c.status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .is_some_and(|g| g >= generation)
        })
        .await
}

/// `configuration` requests to the certificate-secured Connector so far.
fn connector_checks(world: &World) -> usize {
    world
        .sim
        .request_log()
        .iter()
        .filter(|e| e.endpoint == Endpoint::ConnectorCert)
        .filter(|e| e.operations.iter().any(|o| o == "configuration"))
        .count()
}

fn director_requests(world: &World) -> usize {
    world
        .sim
        .request_log()
        .iter()
        .filter(|e| e.endpoint == Endpoint::Director)
        .count()
}

fn mtls_handshakes(world: &World) -> u64 {
    world.sim.tls_handshakes().certificate_secured.get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cycle_asks_the_director_only_over_the_connection_it_already_has() {
    let world = World::connected().await;
    resync(&world).await;
    let checks = connector_checks(&world);
    let handshakes = mtls_handshakes(&world);
    let director = director_requests(&world);
    for _ in 0..3 {
        let connection = resync(&world).await;
        assert_eq!(
            connection.status.unwrap().connection_state,
            ConnectionState::Synchronized
        );
    }
    assert_eq!(
        connector_checks(&world),
        checks,
        "the Connector was asked on an idle cycle"
    );
    assert_eq!(
        director_requests(&world),
        director + 3,
        "one Director request per idle sync"
    );
    assert_eq!(
        mtls_handshakes(&world),
        handshakes,
        "an idle cycle opened a new TLS connection"
    );

    // A renewal brings a new certificate, and so a new client: one new
    // connection, then idle cycles over it again.
    world.ask_for_renewal().await;
    world
        .wait_for_connection("renewed", LONG, |c| {
            !c.spec.refresh_credentials_now
                && c.status
                    .as_ref()
                    .is_some_and(|s| s.connection_status.renewed.is_some())
        })
        .await;
    resync(&world).await;
    let after_renewal = mtls_handshakes(&world);
    assert!(
        after_renewal > handshakes,
        "the renewed certificate is presented on a new connection"
    );
    let credentials = world.certificate_secret().await.unwrap();
    assert!(
        common::director_accepts(&world.sim, &credentials["key"], &credentials["crtChain"]).await,
        "the renewed certificate is the one in use"
    );
    let after_renewal = mtls_handshakes(&world);
    resync(&world).await;
    resync(&world).await;
    assert_eq!(
        mtls_handshakes(&world),
        after_renewal,
        "idle cycles after the renewal reuse the new client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_is_asked_on_each_of_its_four_triggers() {
    let world = World::connected_with(|settings| {
        settings.connector_check_interval = Duration::from_secs(4);
    })
    .await;
    resync(&world).await;

    // 1. refreshCredentialsNow.
    let before = connector_checks(&world);
    world.ask_for_renewal().await;
    world
        .wait_for_connection("refreshCredentialsNow handled", LONG, |c| {
            !c.spec.refresh_credentials_now
        })
        .await;
    assert!(connector_checks(&world) > before, "asked for the renewal");

    // 2. The Director refuses the certificate: the next cycle asks.
    let before = connector_checks(&world);
    world.sim.inject(Fault {
        endpoint: Some(Endpoint::Director),
        ..Fault::new("*", FaultKind::Http401, FaultTimes::Next(1))
    });
    test_support::wait_for("the Connector asked after the refusal", LONG, || async {
        let _ = world
            .connections()
            .patch(
                COMPASS_CONNECTION_NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"resyncNow": true}})),
            )
            .await;
        match connector_checks(&world) > before {
            true => Ok(()),
            false => Err("not asked yet".to_string()),
        }
    })
    .await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;

    // 3. The interval: an idle cycle within it does not ask, one after it does.
    resync(&world).await;
    let before = connector_checks(&world);
    let asked_at = std::time::Instant::now();
    resync(&world).await;
    if asked_at.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            connector_checks(&world),
            before,
            "asked within the interval"
        );
    }
    test_support::wait_for(
        "the Connector asked once the interval passed",
        SHORT,
        || async {
            resync(&world).await;
            match connector_checks(&world) > before {
                true => Ok(()),
                false => Err("not asked yet".to_string()),
            }
        },
    )
    .await;

    // 4. Renewal due: a certificate that is always due (its whole lifetime
    // is below twice the minimal sync time) is renewed at every cycle.
    world.sim.set_cert_validity(Duration::from_secs(2));
    world.ask_for_renewal().await;
    world
        .wait_for_connection("a short certificate", LONG, |c| {
            !c.spec.refresh_credentials_now
        })
        .await;
    let before = connector_checks(&world);
    let csrs = world.csr_count();
    resync(&world).await;
    assert!(
        connector_checks(&world) > before && world.csr_count() > csrs,
        "a certificate due for renewal is renewed through the Connector"
    );
}
