//! The admin HTTP API (plain HTTP, loopback by default). See README.md.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::faults::Fault;
use crate::model::{Application, RuntimeSpec, SubjectTemplate};
use crate::names::ApplicationNames;
use crate::order::ListOrder;
use crate::scenario::{format_duration, parse_duration, Scenario};
use crate::state::{Shared, SimError};

type AppState = State<Arc<Shared>>;

struct AdminError(StatusCode, String);

impl From<SimError> for AdminError {
    fn from(e: SimError) -> Self {
        let status = match &e {
            SimError::UnknownRuntime(_)
            | SimError::UnknownApplication { .. }
            | SimError::UnknownCertificate(_) => StatusCode::NOT_FOUND,
            SimError::RuntimeExists(_) => StatusCode::CONFLICT,
            SimError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            SimError::Ca(_) | SimError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        AdminError(status, e.to_string())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type AdminResult<T> = Result<T, AdminError>;

fn parse<T: DeserializeOwned>(body: &Bytes) -> AdminResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

fn pem_text(pem: String) -> Response {
    ([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response()
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/admin/info", get(info))
        .route("/admin/server-ca.pem", get(server_ca))
        .route("/admin/client-ca.pem", get(client_ca))
        .route("/admin/settings", get(get_settings).put(put_settings))
        .route("/admin/clock/advance", post(advance_clock))
        .route("/admin/scenario", post(load_scenario))
        .route("/admin/runtimes", get(list_runtimes).post(create_runtime))
        .route(
            "/admin/runtimes/{id}",
            get(get_runtime).patch(patch_runtime).delete(delete_runtime),
        )
        .route("/admin/runtimes/{id}/tokens", post(issue_token))
        .route("/admin/runtimes/{id}/labels", get(get_labels))
        .route(
            "/admin/runtimes/{id}/labels/{key}",
            put(put_label).delete(delete_label),
        )
        .route(
            "/admin/runtimes/{id}/applications",
            get(list_applications).put(replace_applications),
        )
        .route(
            "/admin/runtimes/{id}/applications/{app}",
            get(get_application)
                .put(put_application)
                .delete(delete_application),
        )
        .route(
            "/admin/runtimes/{id}/certificates/revoke",
            post(revoke_runtime_certificates),
        )
        .route("/admin/certificates", get(list_certificates))
        .route(
            "/admin/certificates/{fingerprint}/revoke",
            post(revoke_certificate),
        )
        .route("/admin/ca/rotate", post(rotate_ca))
        .route("/admin/requests", get(requests).delete(clear_requests))
        .route(
            "/admin/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route(
            "/admin/faults/{operation}",
            axum::routing::delete(clear_fault),
        )
        .with_state(shared)
}

fn settings_json(shared: &Shared) -> Value {
    let s = shared.settings();
    json!({
        "certValidity": format_duration(s.cert_validity),
        "tokenTtl": format_duration(s.token_ttl),
        "strict": s.strict,
        "listOrder": s.list_order,
        "applicationNames": s.application_names,
        "clockOffset": format_duration(shared.clock.offset()),
    })
}

async fn info(State(shared): AppState) -> Json<Value> {
    Json(json!({
        "urls": shared.urls,
        "settings": settings_json(&shared),
        "serverCaPem": shared.server_ca_pem,
        "clientCaPem": shared.client_ca_pem(),
    }))
}

async fn server_ca(State(shared): AppState) -> Response {
    pem_text(shared.server_ca_pem.clone())
}

async fn client_ca(State(shared): AppState) -> Response {
    pem_text(shared.client_ca_pem())
}

async fn get_settings(State(shared): AppState) -> Json<Value> {
    Json(settings_json(&shared))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SettingsPatch {
    cert_validity: Option<String>,
    token_ttl: Option<String>,
    strict: Option<bool>,
    list_order: Option<ListOrder>,
    application_names: Option<ApplicationNames>,
}

async fn put_settings(State(shared): AppState, body: Bytes) -> AdminResult<Json<Value>> {
    let patch: SettingsPatch = parse(&body)?;
    let cert_validity = patch
        .cert_validity
        .as_deref()
        .map(parse_duration)
        .transpose()?;
    let token_ttl = patch.token_ttl.as_deref().map(parse_duration).transpose()?;
    shared.update_settings(|s| {
        if let Some(v) = cert_validity {
            s.cert_validity = v;
        }
        if let Some(v) = token_ttl {
            s.token_ttl = v;
        }
        if let Some(v) = patch.strict {
            s.strict = v;
        }
        if let Some(v) = patch.list_order {
            s.list_order = v;
        }
        if let Some(v) = patch.application_names {
            s.application_names = v;
        }
    });
    Ok(Json(settings_json(&shared)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    by: String,
}

async fn advance_clock(State(shared): AppState, body: Bytes) -> AdminResult<Json<Value>> {
    let advance: Advance = parse(&body)?;
    shared.clock.advance(parse_duration(&advance.by)?);
    Ok(Json(settings_json(&shared)))
}

async fn load_scenario(State(shared): AppState, body: Bytes) -> AdminResult<StatusCode> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| AdminError(StatusCode::BAD_REQUEST, "the scenario is not UTF-8".into()))?;
    let scenario = Scenario::parse(text)
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, format!("invalid scenario: {e}")))?;
    crate::scenario::seed(&shared, &scenario)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_runtimes(State(shared): AppState) -> Json<Value> {
    Json(json!(shared.runtimes()))
}

async fn create_runtime(State(shared): AppState, body: Bytes) -> AdminResult<Response> {
    let spec: RuntimeSpec = parse(&body)?;
    let id = spec.id.clone();
    shared.create_runtime(spec)?;
    Ok((StatusCode::CREATED, Json(json!(shared.runtime_info(&id)?))).into_response())
}

async fn get_runtime(State(shared): AppState, Path(id): Path<String>) -> AdminResult<Json<Value>> {
    Ok(Json(json!(shared.runtime_info(&id)?)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuntimePatch {
    tenant: Option<String>,
    name: Option<String>,
    description: Option<String>,
    key_algorithm: Option<String>,
    subject: Option<SubjectTemplate>,
}

async fn patch_runtime(
    State(shared): AppState,
    Path(id): Path<String>,
    body: Bytes,
) -> AdminResult<Json<Value>> {
    let patch: RuntimePatch = parse(&body)?;
    shared.with_runtime(&id, |rt| {
        if let Some(v) = patch.tenant {
            rt.spec.tenant = v;
        }
        if let Some(v) = patch.name {
            rt.spec.name = Some(v);
        }
        if let Some(v) = patch.description {
            rt.spec.description = Some(v);
        }
        if let Some(v) = patch.key_algorithm {
            rt.spec.key_algorithm = Some(v);
        }
        if let Some(v) = patch.subject {
            rt.spec.subject = Some(v);
        }
    })?;
    Ok(Json(json!(shared.runtime_info(&id)?)))
}

async fn delete_runtime(
    State(shared): AppState,
    Path(id): Path<String>,
) -> AdminResult<StatusCode> {
    shared.delete_runtime(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn issue_token(State(shared): AppState, Path(id): Path<String>) -> AdminResult<Response> {
    let token = shared.issue_token(&id)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "runtimeId": id,
            "connectorUrl": shared.urls.connector_url,
            "expiresIn": format_duration(shared.settings().token_ttl),
        })),
    )
        .into_response())
}

async fn get_labels(State(shared): AppState, Path(id): Path<String>) -> AdminResult<Json<Value>> {
    Ok(Json(Value::Object(shared.runtime_labels(&id)?)))
}

async fn put_label(
    State(shared): AppState,
    Path((id, key)): Path<(String, String)>,
    body: Bytes,
) -> AdminResult<Json<Value>> {
    let value: Value = parse(&body)?;
    shared.set_runtime_label(&id, &key, value)?;
    Ok(Json(Value::Object(shared.runtime_labels(&id)?)))
}

async fn delete_label(
    State(shared): AppState,
    Path((id, key)): Path<(String, String)>,
) -> AdminResult<Json<Value>> {
    shared.with_runtime(&id, |rt| {
        rt.spec.labels.remove(&key);
    })?;
    Ok(Json(Value::Object(shared.runtime_labels(&id)?)))
}

async fn list_applications(
    State(shared): AppState,
    Path(id): Path<String>,
) -> AdminResult<Json<Value>> {
    let apps = shared.applications(&id)?;
    Ok(Json(json!(apps
        .iter()
        .map(|a| a.as_ref())
        .collect::<Vec<_>>())))
}

async fn replace_applications(
    State(shared): AppState,
    Path(id): Path<String>,
    body: Bytes,
) -> AdminResult<StatusCode> {
    let apps: Vec<Application> = parse(&body)?;
    shared.replace_applications(&id, apps)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_application(
    State(shared): AppState,
    Path((id, app)): Path<(String, String)>,
) -> AdminResult<Json<Value>> {
    let apps = shared.applications(&id)?;
    let found = apps
        .iter()
        .find(|a| a.id == app)
        .ok_or(SimError::UnknownApplication { runtime: id, app })?;
    Ok(Json(json!(found.as_ref())))
}

async fn put_application(
    State(shared): AppState,
    Path((id, app_id)): Path<(String, String)>,
    body: Bytes,
) -> AdminResult<StatusCode> {
    let mut app: Application = parse(&body)?;
    if app.id.is_empty() {
        app.id = app_id.clone();
    }
    if app.id != app_id {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            format!(
                "the body's id {:?} differs from the path's {app_id:?}",
                app.id
            ),
        ));
    }
    let created = shared.put_application(&id, app)?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
}

async fn delete_application(
    State(shared): AppState,
    Path((id, app)): Path<(String, String)>,
) -> AdminResult<StatusCode> {
    shared.remove_application(&id, &app)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_runtime_certificates(
    State(shared): AppState,
    Path(id): Path<String>,
) -> AdminResult<Json<Value>> {
    let revoked = shared.revoke_runtime_certificates(&id)?;
    Ok(Json(json!({ "revoked": revoked })))
}

async fn list_certificates(State(shared): AppState) -> Json<Value> {
    Json(json!(shared.certificates()))
}

async fn revoke_certificate(
    State(shared): AppState,
    Path(fingerprint): Path<String>,
) -> AdminResult<StatusCode> {
    shared.revoke_certificate(&fingerprint)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_ca(State(shared): AppState) -> AdminResult<Json<Value>> {
    let pem = shared.rotate_ca()?;
    Ok(Json(json!({
        "caGeneration": shared.client_ca().generation,
        "clientCaPem": pem,
    })))
}

async fn requests(State(shared): AppState) -> Json<Value> {
    Json(json!(shared.log().entries()))
}

async fn clear_requests(State(shared): AppState) -> StatusCode {
    shared.log().clear();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(shared): AppState) -> Json<Value> {
    Json(json!(shared.faults().list()))
}

async fn add_fault(State(shared): AppState, body: Bytes) -> AdminResult<Response> {
    let fault: Fault = parse(&body)?;
    if fault.operation.trim().is_empty() {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "a fault needs an operation (a top-level field name, or \"*\")".into(),
        ));
    }
    shared.faults().add(fault);
    Ok((StatusCode::CREATED, Json(json!(shared.faults().list()))).into_response())
}

async fn clear_faults(State(shared): AppState) -> StatusCode {
    shared.faults().clear();
    StatusCode::NO_CONTENT
}

async fn clear_fault(State(shared): AppState, Path(operation): Path<String>) -> StatusCode {
    shared.faults().clear_operation(&operation);
    StatusCode::NO_CONTENT
}
