//! GraphQL over HTTP for the three endpoints: find the operation, apply an
//! injected fault, check the client certificate, run the query, log it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::ca::CertRefusal;
use crate::clock::rfc3339;
use crate::faults::FaultKind;
use crate::graphql::connector::{self, ConnectorCaller, ConnectorSchema};
use crate::graphql::director::{self, DirectorCaller, DirectorSchema};
use crate::graphql::operations::top_level_fields;
use crate::log::{redact_variables, Caller, Endpoint, Outcome, RequestLogEntry};
use crate::state::Shared;
use crate::tls::{DropConnection, PeerCertificate};

pub const CONNECTOR_PATH: &str = "/connector/graphql";
pub const DIRECTOR_PATH: &str = "/director/graphql";

#[derive(Clone)]
pub(crate) struct Gateway {
    shared: Arc<Shared>,
    connector: ConnectorSchema,
    director: DirectorSchema,
}

impl Gateway {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            connector: connector::schema_without_data(),
            director: director::schema_without_data(),
        }
    }

    /// `gateway`: the token-secured Connector.
    pub fn token_router(&self) -> Router {
        Router::new()
            .route(CONNECTOR_PATH, post(connector_token))
            .with_state(self.clone())
    }

    /// `gateway-mtls`: the certificate-secured Connector and the Director.
    pub fn mtls_router(&self) -> Router {
        Router::new()
            .route(CONNECTOR_PATH, post(connector_cert))
            .route(DIRECTOR_PATH, post(director))
            .with_state(self.clone())
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The body of a refusal: GraphQL-shaped, so clients show the message.
pub fn error_body(message: &str) -> Value {
    json!({ "errors": [ { "message": message } ] })
}

fn fault_response(kind: FaultKind, operations: &[String]) -> Response {
    let op = operations.first().cloned().unwrap_or_default();
    match kind {
        FaultKind::Http500 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error (compass-sim injected fault)",
        )
            .into_response(),
        FaultKind::Http503 => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable (compass-sim injected fault)",
        )
            .into_response(),
        FaultKind::GraphqlError => json_response(
            StatusCode::OK,
            json!({
                "data": null,
                "errors": [{
                    "message": format!("compass-sim injected fault: {op} failed"),
                    "path": [op],
                }]
            }),
        ),
        FaultKind::NullData => json_response(StatusCode::OK, json!({ "data": null })),
        FaultKind::MalformedJson => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"data\":{{\"{op}\":{{\"compass-sim\": injected malformed JSON"),
        )
            .into_response(),
        FaultKind::DropConnection => {
            let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
            response.extensions_mut().insert(DropConnection);
            response
        }
        FaultKind::Http401 | FaultKind::Http403 => {
            let status = if kind == FaultKind::Http401 {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            json_response(
                status,
                error_body("compass-sim injected fault: the request was refused"),
            )
        }
        FaultKind::RedirectToHttp { port } => (
            StatusCode::TEMPORARY_REDIRECT,
            [(
                header::LOCATION,
                format!("http://127.0.0.1:{port}{}", path_of(operations)),
            )],
        )
            .into_response(),
        FaultKind::Oversized { megabytes } => {
            let chunk = Bytes::from(vec![b'a'; 1 << 20]);
            let head = Bytes::from(format!("{{\"data\":{{\"{op}\":\""));
            let body = futures::stream::iter(
                std::iter::once(head)
                    .chain(std::iter::repeat_n(chunk, megabytes as usize))
                    .map(Ok::<_, std::io::Error>),
            );
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                axum::body::Body::from_stream(body),
            )
                .into_response()
        }
        // Served normally, before or after a change: never reaches here.
        FaultKind::Delay { .. }
        | FaultKind::SlowAnswer { .. }
        | FaultKind::NullList
        | FaultKind::RemoveFirstApplication => StatusCode::OK.into_response(),
    }
}

/// The path a redirect keeps: the GraphQL endpoint's.
fn path_of(operations: &[String]) -> &'static str {
    let connector = [
        "configuration",
        "signCertificateSigningRequest",
        "revokeCertificate",
    ];
    if operations.iter().any(|o| connector.contains(&o.as_str())) {
        CONNECTOR_PATH
    } else {
        DIRECTOR_PATH
    }
}

type Parts = (State<Gateway>, Extension<PeerCertificate>, HeaderMap, Bytes);

async fn connector_token(
    s: State<Gateway>,
    p: Extension<PeerCertificate>,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    handle(Endpoint::ConnectorToken, (s, p, h, b)).await
}

async fn connector_cert(
    s: State<Gateway>,
    p: Extension<PeerCertificate>,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    handle(Endpoint::ConnectorCert, (s, p, h, b)).await
}

async fn director(
    s: State<Gateway>,
    p: Extension<PeerCertificate>,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    handle(Endpoint::Director, (s, p, h, b)).await
}

async fn handle(endpoint: Endpoint, parts: Parts) -> Response {
    let (State(gateway), Extension(peer), headers, body) = parts;
    let shared = gateway.shared.clone();
    let mut entry = RequestLogEntry {
        seq: 0,
        time: rfc3339(shared.clock.now()),
        endpoint,
        operations: Vec::new(),
        operation_name: None,
        caller: Caller::default(),
        request_id: header_str(&headers, "x-request-id"),
        variables: Value::Null,
        outcome: Outcome::Ok,
    };

    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("the body is not a GraphQL request (JSON with a query): {e}");
            return finish_refused(&shared, entry, StatusCode::BAD_REQUEST, message);
        }
    };
    entry.operations = top_level_fields(&request.query, request.operation_name.as_deref());
    entry.operation_name = request.operation_name.clone();
    entry.variables =
        redact_variables(&serde_json::to_value(&request.variables).unwrap_or_default());

    // Who is calling (without spending a token): as Compass's gateway, the
    // SystemAuth that the client certificate's CN names.
    let connector_token = header_str(&headers, "connector-token");
    let certificate = match endpoint {
        Endpoint::ConnectorToken => None,
        _ => {
            let der = peer.0.clone();
            Some(
                shared
                    .check_client_certificate(der.as_deref().map(Vec::as_slice))
                    .and_then(
                        |certificate| match shared.system_auth(&certificate.common_name) {
                            Some(identity) => Ok((certificate, identity)),
                            None => Err(CertRefusal::UnknownSystemAuth {
                                common_name: certificate.common_name,
                            }),
                        },
                    ),
            )
        }
    };
    match (&certificate, &connector_token) {
        (Some(Ok((certificate, identity))), _) => {
            entry.caller.runtime_id = Some(identity.runtime_id.clone());
            entry.caller.certificate = Some(certificate.fingerprint.clone());
        }
        (None, Some(token)) => entry.caller.runtime_id = shared.token_owner(token),
        _ => {}
    }
    let tenant = header_str(&headers, "tenant");
    if endpoint == Endpoint::Director {
        entry.caller.tenant = tenant.clone();
    }

    let later_page = request
        .variables
        .get("after")
        .is_some_and(|after| !matches!(after, async_graphql::Value::Null));
    let fault = shared
        .faults()
        .take_if(endpoint, &entry.operations, |kind| {
            kind != FaultKind::RemoveFirstApplication || later_page
        });
    let mut null_list = false;
    let mut hold_answer = None;
    if let Some(kind) = fault {
        entry.outcome = Outcome::Fault { fault: kind.name() };
        match kind {
            FaultKind::Delay { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            FaultKind::NullList => null_list = true,
            FaultKind::SlowAnswer { ms } => hold_answer = Some(Duration::from_millis(ms)),
            FaultKind::RemoveFirstApplication => {
                if let Some(Ok((_, identity))) = &certificate {
                    shared.remove_first_application(&identity.runtime_id);
                }
            }
            _ => {
                let response = fault_response(kind, &entry.operations);
                record(&shared, entry);
                return response;
            }
        }
    }

    let request = match (endpoint, certificate) {
        (_, Some(Err(refusal))) => {
            // Compass answers a certificate of a rotated-out CA with a
            // GraphQL error, not an HTTP refusal.
            let status = match refusal {
                CertRefusal::NotFromCurrentCa => StatusCode::OK,
                _ => StatusCode::UNAUTHORIZED,
            };
            return finish_refused(&shared, entry, status, refusal.to_string());
        }
        (Endpoint::ConnectorToken, _) => request.data(ConnectorCaller::Token(connector_token)),
        (Endpoint::ConnectorCert, Some(Ok((certificate, identity)))) => {
            request.data(ConnectorCaller::Certificate {
                certificate,
                identity,
            })
        }
        (Endpoint::Director, Some(Ok((_, identity)))) => request.data(DirectorCaller {
            identity,
            tenant_header: tenant,
        }),
        (_, None) => unreachable!("mTLS endpoints always check the certificate"),
    };
    let request = request.data(shared.clone());
    let response = match endpoint {
        Endpoint::Director => gateway.director.execute(request).await,
        _ => gateway.connector.execute(request).await,
    };
    if !response.errors.is_empty() {
        let message = response
            .errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if !matches!(entry.outcome, Outcome::Fault { .. }) {
            entry.outcome = Outcome::Error { message };
        }
    }
    let mut body = serde_json::to_value(&response).unwrap_or_default();
    if null_list {
        // `data.<operation>.data` (a page's list) becomes null.
        if let Some(answer) = entry
            .operations
            .first()
            .and_then(|op| body.get_mut("data")?.get_mut(op))
        {
            if answer.get("data").is_some() {
                answer["data"] = Value::Null;
            }
        }
    }
    if let Some(hold) = hold_answer {
        tokio::time::sleep(hold).await;
    }
    record(&shared, entry);
    json_response(StatusCode::OK, body)
}

fn finish_refused(
    shared: &Shared,
    mut entry: RequestLogEntry,
    status: StatusCode,
    message: String,
) -> Response {
    entry.outcome = Outcome::Refused {
        status: status.as_u16(),
        message: message.clone(),
    };
    record(shared, entry);
    json_response(status, error_body(&message))
}

fn record(shared: &Shared, entry: RequestLogEntry) {
    tracing::info!(
        endpoint = %entry.endpoint,
        operations = ?entry.operations,
        runtime = entry.caller.runtime_id.as_deref().unwrap_or("-"),
        request_id = entry.request_id.as_deref().unwrap_or("-"),
        outcome = ?entry.outcome,
        "graphql request"
    );
    shared.log().push(entry);
}
