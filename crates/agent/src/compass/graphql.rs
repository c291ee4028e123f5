//! GraphQL over HTTPS: one request, one typed answer, and errors that say which
//! call failed and why. Values always travel as variables, never in query text.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::metrics::CompassMetrics;
use super::CompassError;
use crate::certificates::ClientCredentials;

/// How the agent talks TLS to Compass.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// `APP_SKIP_COMPASS_TLS_VERIFY`: accept any server certificate. Off by default.
    pub skip_verify: bool,
    /// PEM certificates trusted in addition to the system's roots
    /// (`APP_COMPASS_CA_BUNDLE`), e.g. a private Compass CA.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// The limit for one whole request, connection included.
    pub request_timeout: Duration,
    /// `APP_COMPASS_ALLOW_HTTP`: accept plain `http://` URLs. Off by
    /// default: the Connector's token and the answers' credentials travel
    /// over TLS only.
    pub allow_http: bool,
    /// The largest answer read, in bytes (`APP_COMPASS_MAX_RESPONSE_SIZE`).
    pub max_response_bytes: u64,
}

/// An HTTP client for one Compass endpoint, with or without a client certificate.
#[derive(Clone)]
pub struct GraphqlClient {
    http: reqwest::Client,
    url: String,
    max_response_bytes: u64,
    request_id: Option<String>,
    metrics: Option<Arc<CompassMetrics>>,
    query_logging: bool,
}

/// Each query text holds exactly one operation, so no `operationName` is sent.
#[derive(Serialize)]
struct Request<'a, V> {
    query: &'a str,
    variables: V,
}

#[derive(Deserialize)]
struct Response<D> {
    data: Option<D>,
    #[serde(default)]
    errors: Option<Vec<GraphqlErrorEntry>>,
}

#[derive(Deserialize)]
struct GraphqlErrorEntry {
    #[serde(default)]
    message: String,
}

/// Longest piece of an unexpected body quoted in an error.
const EXCERPT_LEN: usize = 200;

/// How long an idle connection to Compass is kept for the next cycle: longer
/// than any sync period, so an idle sync needs no new TLS handshake (a
/// connection the server closed meanwhile is replaced on the next request).
const IDLE_CONNECTION_KEPT: Duration = Duration::from_secs(3600);
/// An HTTP/2 connection with a request in flight that has carried nothing
/// from Compass for this long is pinged; one whose ping is not answered
/// within [`PING_TIMEOUT`] is closed.
const PING_AFTER_IDLE: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

fn check_url(url: &str, tls: &TlsSettings) -> Result<(), CompassError> {
    let parsed = url::Url::parse(url).map_err(|source| CompassError::InvalidUrl {
        url: url.to_string(),
        source,
    })?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if tls.allow_http => Ok(()),
        "http" => Err(CompassError::PlainHttp {
            url: url.to_string(),
        }),
        _ => Err(CompassError::UnsupportedScheme {
            url: url.to_string(),
        }),
    }
}

/// The HTTP client for Compass: TLS as `tls` says, presenting `identity`
/// when given. Building one costs a TLS configuration and, on first use, a
/// handshake per host: keep it while the certificate stays the same.
pub fn build_http(
    tls: &TlsSettings,
    identity: Option<&ClientCredentials>,
) -> Result<reqwest::Client, CompassError> {
    let mut builder = reqwest::Client::builder()
        .timeout(tls.request_timeout)
        .connect_timeout(tls.request_timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(IDLE_CONNECTION_KEPT)
        .pool_max_idle_per_host(2)
        .tcp_keepalive(Duration::from_secs(30))
        // An HTTP/2 connection that stopped answering during a request (a
        // partition, a load balancer failing over) is found by a ping and
        // closed with its requests, rather than kept for the next one. Idle
        // connections are not pinged: a fleet's pings would cost Compass
        // more than the requests.
        .http2_keep_alive_interval(PING_AFTER_IDLE)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(false)
        .user_agent(concat!("compass-runtime-agent/", env!("CARGO_PKG_VERSION")))
        // A redirect would carry the Connector-Token and Tenant headers to
        // wherever it points, plain http included: none is followed.
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(tls.skip_verify);
    if let Some(pem) = &tls.extra_roots_pem {
        let roots =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|source| CompassError::Tls {
                what: "the extra CA bundle is not valid PEM",
                source,
            })?;
        builder = builder.tls_certs_merge(roots);
    }
    if let Some(credentials) = identity {
        let identity =
            reqwest::Identity::from_pem(&credentials.identity_pem()).map_err(|source| {
                CompassError::Tls {
                    what: "the client certificate cannot be used for TLS",
                    source,
                }
            })?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|source| CompassError::Tls {
        what: "cannot build the HTTP client",
        source,
    })
}

impl GraphqlClient {
    /// A client of its own for `url` (its connections are not shared).
    pub fn new(
        url: &str,
        tls: &TlsSettings,
        identity: Option<&ClientCredentials>,
    ) -> Result<GraphqlClient, CompassError> {
        check_url(url, tls)?;
        GraphqlClient::with_http(build_http(tls, identity)?, url, tls)
    }

    /// A client for `url` over `http` (from [`build_http`]), which may be
    /// shared with other endpoints: its pool keeps one connection per host,
    /// so the certificate-secured Connector and the Director (one host in a
    /// real Compass) cost one TLS handshake between them, once.
    pub fn with_http(
        http: reqwest::Client,
        url: &str,
        tls: &TlsSettings,
    ) -> Result<GraphqlClient, CompassError> {
        check_url(url, tls)?;
        Ok(GraphqlClient {
            http,
            url: url.to_string(),
            max_response_bytes: tls.max_response_bytes,
            request_id: None,
            metrics: None,
            query_logging: false,
        })
    }

    /// The same client, sending `x-request-id: <id>` with every request.
    pub fn with_request_id(&self, request_id: &str) -> GraphqlClient {
        GraphqlClient {
            request_id: Some(request_id.to_string()),
            ..self.clone()
        }
    }

    /// The same client, counting its requests in `metrics`.
    pub fn with_metrics(self, metrics: Arc<CompassMetrics>) -> GraphqlClient {
        GraphqlClient {
            metrics: Some(metrics),
            ..self
        }
    }

    /// The same client, logging each operation's name (`APP_QUERY_LOGGING`).
    /// Variables are not logged: they carry CSRs and, in answers, credentials.
    pub fn with_query_logging(self, enabled: bool) -> GraphqlClient {
        GraphqlClient {
            query_logging: enabled,
            ..self
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `query` (named `operation`) with `variables` and decodes `data` as `D`.
    /// A transport error, an HTTP error status, a body that is not JSON, a GraphQL
    /// `errors` array or a `null` data are all errors naming the operation.
    pub async fn execute<V: Serialize, D: DeserializeOwned>(
        &self,
        operation: &'static str,
        query: &str,
        variables: V,
        headers: &[(&str, &str)],
    ) -> Result<D, CompassError> {
        if self.query_logging {
            tracing::info!(operation, url = %self.url, "sending GraphQL operation to Compass");
        }
        let started = std::time::Instant::now();
        let result = self.send(operation, query, variables, headers).await;
        if let Some(metrics) = &self.metrics {
            let outcome = result
                .as_ref()
                .map_or_else(CompassError::category, |_| "ok");
            metrics.record(operation, outcome, started.elapsed().as_secs_f64());
        }
        result
    }

    async fn send<V: Serialize, D: DeserializeOwned>(
        &self,
        operation: &'static str,
        query: &str,
        variables: V,
        headers: &[(&str, &str)],
    ) -> Result<D, CompassError> {
        let mut request = self
            .http
            .post(&self.url)
            .json(&Request { query, variables });
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(id) = &self.request_id {
            request = request.header("x-request-id", id);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CompassError::from_transport(operation, &self.url, e))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_string();
            return Err(CompassError::Redirect {
                operation,
                status: status.as_u16(),
                location,
            });
        }
        let body = self.read_body(operation, response).await?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(CompassError::Refused {
                operation,
                reason: format!("HTTP {status}: {}", error_messages_or_excerpt(&body)),
            });
        }
        if !status.is_success() {
            return Err(CompassError::HttpStatus {
                operation,
                status: status.as_u16(),
                excerpt: error_messages_or_excerpt(&body),
            });
        }
        decode_response(operation, &body)
    }
}

impl GraphqlClient {
    /// The answer's body, up to the limit: an answer that never ends costs
    /// at most that much memory.
    async fn read_body(
        &self,
        operation: &'static str,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, CompassError> {
        let limit = self.max_response_bytes;
        let too_large = || CompassError::TooLarge { operation, limit };
        let announced = response.content_length().unwrap_or(0);
        if announced > limit {
            return Err(too_large());
        }
        // Sized once when the length is announced: no doubling and copying
        // of a Director page (a lying length only costs up to the limit).
        let mut body = Vec::with_capacity(announced as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| CompassError::from_transport(operation, &self.url, e))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Decodes a GraphQL answer body; pure, so it can be tested and fuzzed alone.
pub fn decode_response<D: DeserializeOwned>(
    operation: &'static str,
    body: &[u8],
) -> Result<D, CompassError> {
    // Fast path: straight into the answer type, with no intermediate JSON tree
    // (a Director page of many applications is large). Anything unusual is
    // classified below.
    if let Ok(Response {
        data: Some(data),
        errors: None,
    }) = serde_json::from_slice::<Response<D>>(body)
    {
        return Ok(data);
    }
    let response: Response<serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| CompassError::NotJson {
            operation,
            reason: json_error_place(&e),
            excerpt: excerpt_unless_json(body),
        })?;
    if let Some(errors) = response.errors.filter(|errors| !errors.is_empty()) {
        return Err(CompassError::GraphQl {
            operation,
            messages: errors.into_iter().map(|e| e.message).collect(),
        });
    }
    let data = match response.data {
        None | Some(serde_json::Value::Null) => return Err(CompassError::NullData { operation }),
        Some(data) => data,
    };
    serde_json::from_value(data).map_err(|e| CompassError::InvalidAnswer {
        operation,
        reason: without_quoted_values(&e.to_string()),
    })
}

/// Where a body stopped being JSON, not what it said there: an answer that
/// breaks off inside a credential must not put the credential into the
/// status, an Event or the log.
fn json_error_place(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match error.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "invalid JSON",
        Category::Data => "unexpected data",
        Category::Eof => "it ends early",
    };
    format!("{what} at line {} column {}", error.line(), error.column())
}

/// The beginning of a body that is not JSON at all (an HTML error page,
/// say), which tells what answered; nothing of a body that is JSON cut off
/// or broken, which may carry credentials.
fn excerpt_unless_json(body: &[u8]) -> String {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{') | Some(b'[') => format!("a JSON body of {} bytes", body.len()),
        _ => excerpt(body),
    }
}

/// A decoding error's text with the values it quotes left out (serde quotes
/// the offending value: `invalid type: string "…", expected …`); the names
/// of fields, which are the agent's own, stay.
pub(super) fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // Skip to the closing quote, minding escapes.
                let mut escaped = false;
                for next in chars.by_ref() {
                    match next {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        _ => escaped = false,
                    }
                }
                out.push_str("\"…\"");
            }
            '`' => {
                let quoted: String = chars.by_ref().take_while(|c| *c != '`').collect();
                if out.ends_with("field ") {
                    out.push('`');
                    out.push_str(&quoted);
                    out.push('`');
                } else {
                    out.push_str("`…`");
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The GraphQL error messages of a body if it has any, else its beginning.
fn error_messages_or_excerpt(body: &[u8]) -> String {
    match serde_json::from_slice::<Response<serde_json::Value>>(body) {
        Ok(Response {
            errors: Some(errors),
            ..
        }) if !errors.is_empty() => errors
            .into_iter()
            .map(|e| e.message)
            .collect::<Vec<_>>()
            .join("; "),
        _ => excerpt(body),
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut cut: String = text.chars().take(EXCERPT_LEN).collect();
    if text.chars().count() > EXCERPT_LEN {
        cut.push('…');
    }
    if cut.trim().is_empty() {
        "<empty body>".into()
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Answer {
        value: i32,
    }

    #[test]
    fn data_decodes_into_the_answer_type() {
        let answer: Answer = decode_response("op", br#"{"data":{"value":3}}"#).unwrap();
        assert_eq!(answer, Answer { value: 3 });
    }

    #[test]
    fn an_errors_array_is_an_error_even_with_data() {
        let error = decode_response::<Answer>(
            "configuration",
            br#"{"data":{"value":3},"errors":[{"message":"token invalid"}]}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&error, CompassError::GraphQl { messages, .. } if messages == &["token invalid"])
        );
        assert!(
            error.to_string().contains("configuration")
                && error.to_string().contains("token invalid"),
            "{error}"
        );
    }

    #[test]
    fn null_or_missing_data_is_an_error() {
        for body in [&br#"{"data":null}"#[..], br#"{}"#, br#"{"errors":[]}"#] {
            let error = decode_response::<Answer>("runtime", body).unwrap_err();
            assert!(
                matches!(
                    error,
                    CompassError::NullData {
                        operation: "runtime"
                    }
                ),
                "{error}"
            );
        }
    }

    #[test]
    fn a_body_that_is_not_json_is_quoted_in_the_error() {
        let error = decode_response::<Answer>("op", b"<html>502 Bad Gateway</html>").unwrap_err();
        assert!(error.to_string().contains("502 Bad Gateway"), "{error}");
    }

    #[test]
    fn data_of_the_wrong_shape_is_an_error() {
        let error = decode_response::<Answer>("op", br#"{"data":{"value":"three"}}"#).unwrap_err();
        assert!(
            matches!(error, CompassError::InvalidAnswer { .. }),
            "{error}"
        );
    }

    #[test]
    fn no_credential_of_a_broken_answer_reaches_an_error_text() {
        // Cut off inside a credential.
        let cut =
            br#"{"data":{"applicationsForRuntime":{"data":[{"credential":{"password":"hunter2-"#;
        let error = decode_response::<Answer>("applicationsForRuntime", cut).unwrap_err();
        assert!(matches!(error, CompassError::NotJson { .. }), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error.to_string().contains("ends early at line 1"),
            "{error}"
        );
        // A credential where something else belongs.
        let misplaced = br#"{"data":{"value":"s3cr3t-in-the-wrong-place"}}"#;
        let error = decode_response::<Answer>("op", misplaced).unwrap_err();
        assert!(
            matches!(error, CompassError::InvalidAnswer { .. }),
            "{error}"
        );
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
        assert!(
            error.to_string().contains("invalid type: string"),
            "{error}"
        );
        // Field names stay.
        assert_eq!(
            without_quoted_values("missing field `clientId`"),
            "missing field `clientId`"
        );
        assert_eq!(
            without_quoted_values(r#"unknown variant `x`, expected one of `a` at "a\"b""#),
            "unknown variant `…`, expected one of `…` at \"…\""
        );
    }

    #[test]
    fn plain_http_is_refused_unless_allowed() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = TlsSettings {
            request_timeout: Duration::from_secs(1),
            max_response_bytes: 1 << 20,
            ..TlsSettings::default()
        };
        let refused = GraphqlClient::new("http://director.example/graphql", &tls, None);
        assert!(matches!(refused, Err(CompassError::PlainHttp { .. })));
        let allowed = TlsSettings {
            allow_http: true,
            ..tls.clone()
        };
        assert!(GraphqlClient::new("http://director.example/graphql", &allowed, None).is_ok());
        assert!(GraphqlClient::new("https://director.example/graphql", &tls, None).is_ok());
        assert!(matches!(
            GraphqlClient::new("ftp://director.example/graphql", &allowed, None),
            Err(CompassError::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn long_bodies_are_cut() {
        let body = vec![b'x'; 10_000];
        assert!(excerpt(&body).chars().count() <= EXCERPT_LEN + 1);
    }
}
