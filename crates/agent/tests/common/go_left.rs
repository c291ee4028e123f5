//! The cluster as the Go agent leaves it (spec, section 7): the starting
//! point of a swap to our agent, for the tests that begin there.

use base64::Engine;
use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::COMPASS_CONNECTION_NAME;
use compass_runtime_agent::sync::names;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{go_form, World, NS, RUNTIME_ID};

/// PEM as Go's `pem.EncodeToMemory` writes it: 64 columns, `\n`.
fn go_pem(text: &str) -> String {
    pem::parse_many(text)
        .unwrap()
        .iter()
        .map(|block| {
            pem::encode_config(
                block,
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            )
        })
        .collect()
}

/// The cluster as the Go agent leaves it for `director`: its certificate
/// Secret (PEM as Go writes it), its status on `compass-connection` (no
/// annotation of ours), its Applications and Secrets, a spent token removed.
/// Returns how many Secrets of Applications it wrote.
pub async fn as_the_go_agent_leaves_it(
    world: &mut World,
    director: &[compass_sim::model::Application],
) -> usize {
    // A certificate from the Connector, as the Go agent would have one: our
    // agent connects once with an empty Director, then stops.
    world.connect_once().await;

    let certificate = world.certificate_secret().await.unwrap();
    let cluster = &world.settings.cluster_certificates_secret;
    let certificate_secrets: Api<Secret> =
        Api::namespaced(world.client.clone(), &cluster.namespace);
    let mut stored = certificate_secrets.get(&cluster.name).await.unwrap();
    let encoded =
        |text: &str| json!(base64::engine::general_purpose::STANDARD.encode(go_pem(text)));
    stored.data = Some(
        serde_json::from_value(json!({
            "crt": encoded(&certificate["crt"]),
            "key": encoded(&certificate["key"]),
            "crtChain": encoded(&certificate["crtChain"]),
        }))
        .unwrap(),
    );
    certificate_secrets
        .replace(&cluster.name, &PostParams::default(), &stored)
        .await
        .unwrap();

    let an_hour_ago = Time(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1));
    let connection = world.connection().await.unwrap();
    let certificate_status = connection
        .status
        .as_ref()
        .unwrap()
        .connection_status
        .certificate_status
        .clone();
    world
        .connections()
        .patch_status(
            COMPASS_CONNECTION_NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {
                "connectionState": "Synchronized",
                "connectionStatus": {
                    "established": an_hour_ago, "renewed": null, "lastSync": an_hour_ago,
                    "lastSuccess": an_hour_ago, "error": "",
                    "certificateStatus": {
                        "acquired": an_hour_ago,
                        "notBefore": certificate_status.not_before,
                        "notAfter": certificate_status.not_after,
                    },
                },
                "synchronizationStatus": {
                    "lastAttempt": an_hour_ago, "lastSuccessfulFetch": an_hour_ago,
                    "lastSuccessfulApplication": an_hour_ago, "error": "",
                },
            }})),
        )
        .await
        .unwrap();
    // The Go agent records no token digest.
    world
        .connections()
        .patch(
            COMPASS_CONNECTION_NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {
                compass_runtime_agent::crd::labels::PRESENTED_TOKEN_ANNOTATION: null
            }}})),
        )
        .await
        .unwrap();

    let gateway = world.settings.central_gateway_service_url.clone();
    let dynamic = Api::<DynamicObject>::all_with(
        world.client.clone(),
        &ApiResource::erase::<Application>(&()),
    );
    let secrets: Api<Secret> = Api::namespaced(world.client.clone(), NS);
    let mut written = 0;
    for app in director {
        world.sim.put_application(RUNTIME_ID, app.clone()).unwrap();
        let name = names::normalize_application_name(&app.name);
        let object: DynamicObject =
            serde_json::from_value(go_form::application(app, &name, &gateway, false)).unwrap();
        let created = dynamic
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
        for secret in go_form::secrets(app, &name, &created.uid().unwrap(), NS) {
            let secret: Secret = serde_json::from_value(secret).unwrap();
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .unwrap();
            written += 1;
        }
    }
    // Once connected, the Go agent needs no token; a spent one is removed.
    let mut values = world.config_values("spent-by-the-go-agent");
    values.remove("TOKEN");
    world.write_config_secret(values).await;
    written
}
