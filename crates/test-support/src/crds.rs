//! Installing CustomResourceDefinitions and waiting until they can be used.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};

/// Create or replace CRDs (server-side apply, field manager `test-support`,
/// forced) and wait — polling with a deadline of 30 s per CRD — until each is
/// `Established` and `NamesAccepted`, every served version is in discovery and
/// its resources can be listed.
pub async fn install_crds(
    client: &kube::Client,
    crds: &[CustomResourceDefinition],
) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("test-support").force();
    for crd in crds {
        let name = crd
            .metadata
            .name
            .clone()
            .ok_or_else(|| anyhow!("a CRD without metadata.name"))?;
        let mut crd = crd.clone();
        crd.metadata.resource_version = None;
        crd.metadata.managed_fields = None;
        crd.status = None;
        let mut value = serde_json::to_value(&crd)?;
        value["apiVersion"] = "apiextensions.k8s.io/v1".into();
        value["kind"] = "CustomResourceDefinition".into();
        api.patch(&name, &pp, &Patch::Apply(&value))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
    }
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        wait_crd_servable(client, &api, crd, &name)
            .await
            .with_context(|| format!("waiting for CRD {name} to be servable"))?;
    }
    Ok(())
}

async fn wait_crd_servable(
    client: &kube::Client,
    api: &Api<CustomResourceDefinition>,
    crd: &CustomResourceDefinition,
    name: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pause = Duration::from_millis(10);
    loop {
        let last = match crd_servable(client, api, crd, name).await {
            Ok(()) => return Ok(()),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("not servable after 30s; last: {last}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

async fn crd_servable(
    client: &kube::Client,
    api: &Api<CustomResourceDefinition>,
    crd: &CustomResourceDefinition,
    name: &str,
) -> anyhow::Result<()> {
    let current = api.get(name).await?;
    let conditions = current
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for wanted in ["Established", "NamesAccepted"] {
        let ok = conditions
            .iter()
            .any(|c| c.type_ == wanted && c.status == "True");
        if !ok {
            bail!("condition {wanted} is not True (conditions: {conditions:?})");
        }
    }
    let spec = &crd.spec;
    for version in spec.versions.iter().filter(|v| v.served) {
        let group_version = format!("{}/{}", spec.group, version.name);
        let resources = client
            .list_api_group_resources(&group_version)
            .await
            .with_context(|| format!("discovery of {group_version}"))?;
        if !resources
            .resources
            .iter()
            .any(|r| r.name == spec.names.plural)
        {
            bail!(
                "{} not yet in discovery of {group_version}",
                spec.names.plural
            );
        }
        let gvk = GroupVersionKind::gvk(&spec.group, &version.name, &spec.names.kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, &spec.names.plural);
        let objects: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        objects
            .list_metadata(&ListParams::default().limit(1))
            .await
            .with_context(|| format!("listing {}.{group_version}", spec.names.plural))?;
    }
    Ok(())
}
