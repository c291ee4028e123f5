//! Objects as the Go agent writes them, transcribed from its code (the
//! converter `kyma/applications/converter.go` with the Go types' JSON tags,
//! `kyma/secrets/repository.go` `makeSecret`, the request-parameter and
//! credential strategies, `CredentialsManager.PreserveCredentials`): the
//! starting point of a swap to our agent. Written apart from our converter
//! on purpose, as an oracle.

use compass_runtime_agent::sync::names;
use compass_sim::model::{Application, Bundle, Credential, MultiMap};
use serde_json::{json, Map, Value};

/// The Go agent's Application for a Director application named `name` in
/// the cluster (after its normalization).
pub fn application(app: &Application, name: &str, gateway: &str, skip_verify: bool) -> Value {
    let services: Vec<Value> = app
        .bundles
        .iter()
        .map(|bundle| service(name, bundle, gateway))
        .collect();
    let client_ids: Vec<&str> = app.auths.iter().map(|a| a.id.as_str()).collect();
    json!({
        "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": name,
            "labels": {"applicationconnector.kyma-project.io/managed-by": "compass-runtime-agent"},
        },
        "spec": {
            "description": description(app.description.as_deref()),
            "services": services,
            "labels": {"connected-app": name},
            "compassMetadata": {"applicationId": app.id, "authentication": {"clientIds": client_ids}},
            "displayName": "",
            "providerDisplayName": "",
            "longDescription": "",
            "skipVerify": skip_verify,
            "encodeUrl": false,
        },
        "status": {"installationStatus": {"status": "", "description": ""}},
    })
}

fn description(text: Option<&str>) -> &str {
    match text {
        Some(text) if !text.is_empty() => text,
        _ => "Description not provided",
    }
}

fn service(app: &str, bundle: &Bundle, gateway: &str) -> Value {
    let auth = bundle.default_instance_auth.as_ref();
    let credentials = match auth.and_then(|a| a.credential.as_ref()) {
        Some(Credential::Oauth(oauth)) => json!({
            "type": "OAuth",
            "secretName": names::credentials_secret_name(app, &bundle.id),
            "authenticationUrl": oauth.url,
        }),
        Some(Credential::Basic(_)) => json!({
            "type": "Basic",
            "secretName": names::credentials_secret_name(app, &bundle.id),
        }),
        None => json!({"type": "", "secretName": ""}),
    };
    let mut credentials = credentials;
    if let Some(csrf) = auth
        .and_then(|a| a.request_auth.as_ref())
        .and_then(|r| r.csrf.as_ref())
    {
        if credentials["type"] != "" {
            credentials["csrfInfo"] = json!({"tokenEndpointURL": csrf.token_endpoint_url});
        }
    }
    let parameters_secret = auth
        .filter(|a| !parameters_empty(&a.additional_headers, &a.additional_query_params))
        .map(|_| names::request_parameters_secret_name(app, &bundle.id));
    let mut entries: Vec<Value> = bundle
        .api_definitions
        .iter()
        .map(|api| {
            let mut entry = json!({
                "type": "API",
                "targetUrl": api.target_url,
                "credentials": credentials,
                "name": api.name,
                "id": api.id,
                "centralGatewayUrl": format!(
                    "{gateway}/{app}/{}/{}",
                    normalize_name(&bundle.name),
                    normalize_name(&api.name)
                ),
                "gatewayUrl": "",
            });
            if let Some(secret) = &parameters_secret {
                entry["requestParametersSecretName"] = json!(secret);
            }
            entry
        })
        .collect();
    entries.extend(bundle.event_definitions.iter().map(|event| {
        json!({
            "type": "Events",
            "targetUrl": "",
            "credentials": {"type": "", "secretName": ""},
            "name": event.name,
            "id": event.id,
            "centralGatewayUrl": "",
            "gatewayUrl": "",
        })
    }));
    let mut service = json!({
        "id": bundle.id,
        "identifier": "",
        "name": normalize_service_name_with_id(&bundle.name, &bundle.id),
        "displayName": bundle.name,
        "description": description(bundle.description.as_deref()),
        "entries": entries,
        "providerDisplayName": "",
    });
    if let Some(schema) = &bundle.instance_auth_request_input_schema {
        service["authCreateParameterSchema"] = json!(schema);
    }
    service
}

/// `RequestParameters.IsEmpty`: both maps missing or empty.
fn parameters_empty(headers: &Option<MultiMap>, query: &Option<MultiMap>) -> bool {
    headers.as_ref().is_none_or(|h| h.is_empty()) && query.as_ref().is_none_or(|q| q.is_empty())
}

/// The gateway's `normalization.NormalizeName`.
fn normalize_name(name: &str) -> String {
    let mut out = String::new();
    let mut in_run = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    let mut out = out.to_lowercase();
    if out.ends_with('-') {
        out.pop();
    }
    out.truncate(57);
    out.strip_prefix('-').map(str::to_string).unwrap_or(out)
}

/// `normalization.NormalizeServiceNameWithId`.
fn normalize_service_name_with_id(name: &str, id: &str) -> String {
    use sha1::{Digest, Sha1};
    let suffix = &hex::encode(Sha1::digest(id.as_bytes()))[..5];
    let joined = format!("{}-{suffix}", normalize_name(name));
    joined
        .strip_prefix('-')
        .map(str::to_string)
        .unwrap_or(joined)
}

/// The Secrets the Go agent writes for an application (credentials only when
/// both values are set; request parameters unless both maps are empty), owned
/// by the Application of `owner_uid`.
pub fn secrets(app: &Application, name: &str, owner_uid: &str, namespace: &str) -> Vec<Value> {
    let mut secrets = Vec::new();
    for bundle in &app.bundles {
        let Some(auth) = &bundle.default_instance_auth else {
            continue;
        };
        let credentials = match &auth.credential {
            Some(Credential::Basic(basic))
                if !basic.username.is_empty() && !basic.password.is_empty() =>
            {
                Some(data(&[
                    ("username", &basic.username),
                    ("password", &basic.password),
                ]))
            }
            Some(Credential::Oauth(oauth))
                if !oauth.client_id.is_empty() && !oauth.client_secret.is_empty() =>
            {
                Some(data(&[
                    ("clientId", &oauth.client_id),
                    ("clientSecret", &oauth.client_secret),
                ]))
            }
            _ => None,
        };
        if let Some(data) = credentials {
            let secret_name = names::credentials_secret_name(name, &bundle.id);
            secrets.push(secret(
                &secret_name,
                name,
                &bundle.id,
                owner_uid,
                namespace,
                data,
            ));
        }
        if !parameters_empty(&auth.additional_headers, &auth.additional_query_params) {
            let mut values = Vec::new();
            if let Some(headers) = &auth.additional_headers {
                values.push(("headers", go_json(headers)));
            }
            if let Some(query) = &auth.additional_query_params {
                values.push(("queryParameters", go_json(query)));
            }
            let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let secret_name = names::request_parameters_secret_name(name, &bundle.id);
            secrets.push(secret(
                &secret_name,
                name,
                &bundle.id,
                owner_uid,
                namespace,
                data(&values),
            ));
        }
    }
    secrets
}

/// `json.Marshal` of a `map[string][]string`: keys sorted, `<>&` escaped.
fn go_json(map: &MultiMap) -> String {
    let sorted: std::collections::BTreeMap<_, _> = map.iter().collect();
    serde_json::to_string(&sorted)
        .unwrap()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn data(values: &[(&str, &str)]) -> Map<String, Value> {
    use base64::Engine;
    values
        .iter()
        .map(|(key, value)| {
            (
                key.to_string(),
                json!(base64::engine::general_purpose::STANDARD.encode(value)),
            )
        })
        .collect()
}

fn secret(
    name: &str,
    app: &str,
    bundle_id: &str,
    owner_uid: &str,
    namespace: &str,
    data: Map<String, Value>,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": app, "bundleId": bundle_id},
            "ownerReferences": [{
                "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
                "kind": "Application",
                "name": app,
                "uid": owner_uid,
            }],
        },
        "data": data,
    })
}
