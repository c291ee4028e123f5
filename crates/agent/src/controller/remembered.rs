//! What the reconcile remembers from one run to the next, in memory only:
//! lost on a restart, by design (everything that must survive one is in the
//! cluster). [`Context`](super::Context) holds one [`Remembered`].

use jiff::Timestamp;

use super::decide::{Backoff, ConnectorCheck};
use crate::compass::connector::CsrInfo;
use crate::config::SourceOrigin;
use crate::crd::compass_connection::ManagementInfo;
use crate::sync::KnownAnswers;

/// What the reconcile remembers between runs.
#[derive(Default)]
pub struct Remembered {
    /// Failures and the scheduled attempt (see
    /// [`next_run`](super::decide::next_run)); a reset forgets them, and
    /// nothing else here.
    pub backoff: Backoff,
    /// Where the connection parameters were last read from (for the status).
    configuration_source: Option<SourceOrigin>,
    /// The runtime id last read from the configuration, for request ids.
    runtime_id: Option<String>,
    /// The Connector's answer to a one-time token it has spent, until the
    /// certificate is signed with it.
    answer_to_token: Option<AnswerToToken>,
    /// A CA certificate that could not be stored yet (the client certificate
    /// that came with it was).
    unstored_ca: Option<String>,
    /// The mTLS client of the certificate in use, kept across cycles: its
    /// connections to Compass stay open, so an idle cycle costs no TLS
    /// handshake. Replaced when the certificate changes.
    compass_http: Option<KeptClient>,
    /// When the certificate-secured Connector last answered (unknown after a
    /// start).
    connector_answered: Option<Timestamp>,
    /// The Director refused the certificate since: the Connector may tell
    /// why (new URLs), or renew.
    connector_wanted: bool,
    /// The Director's answers of the last fetch, each with what it wanted
    /// (see [`KnownAnswers`]): an idle sync parses and converts none of
    /// them again. 40 bytes an application.
    known_answers: KnownAnswers,
}

/// What the Connector's token-secured `configuration` answered to the
/// configured one-time token. The Connector spends that token on
/// `configuration`; keeping the answer until the certificate is signed means
/// a signing step that fails on the way (a timeout, a 503, a cycle abandoned
/// at its deadline) is retried with it instead of wasting the operator's
/// token.
#[derive(Clone)]
pub struct AnswerToToken {
    /// A digest of the connection parameters it was obtained with: a changed
    /// configuration (e.g. a new token) is used instead.
    pub parameters_digest: String,
    /// The token for the signing step; wiped from memory when dropped.
    pub csr_token: zeroize::Zeroizing<String>,
    pub csr_info: CsrInfo,
    pub management_info: ManagementInfo,
}

struct KeptClient {
    certificate_pem: String,
    http: reqwest::Client,
}

impl Remembered {
    /// The answers of the last fetch, for the fetch under way to recall
    /// from; [`Remembered::keep_known_answers`] puts back what it saw.
    pub fn take_known_answers(&mut self) -> KnownAnswers {
        std::mem::take(&mut self.known_answers)
    }

    pub fn keep_known_answers(&mut self, known: KnownAnswers) {
        self.known_answers = known;
    }

    /// Notes where the connection parameters were read from; `true` when
    /// that is another place than last time (worth saying in the log).
    pub fn note_source(&mut self, origin: &SourceOrigin) -> bool {
        if self.configuration_source.as_ref() == Some(origin) {
            return false;
        }
        self.configuration_source = Some(origin.clone());
        true
    }

    /// Where the connection parameters were last read from, if they were.
    pub fn configuration_source(&self) -> Option<String> {
        self.configuration_source.as_ref().map(ToString::to_string)
    }

    pub fn note_runtime_id(&mut self, runtime_id: &str) {
        self.runtime_id = Some(runtime_id.to_string());
    }

    pub fn runtime_id(&self) -> Option<String> {
        self.runtime_id.clone()
    }

    /// The Connector's answer to the token of the parameters whose digest
    /// is `parameters_digest`, if it is kept.
    pub fn answer_to_token(&self, parameters_digest: &str) -> Option<AnswerToToken> {
        self.answer_to_token
            .as_ref()
            .filter(|answer| answer.parameters_digest == parameters_digest)
            .cloned()
    }

    pub fn keep_answer_to_token(&mut self, answer: AnswerToToken) {
        self.answer_to_token = Some(answer);
    }

    /// The answer's token is spent (signed with), or refused for good.
    pub fn forget_answer_to_token(&mut self) {
        self.answer_to_token = None;
    }

    pub fn unstored_ca(&self) -> Option<String> {
        self.unstored_ca.clone()
    }

    pub fn set_unstored_ca(&mut self, ca: Option<String>) {
        self.unstored_ca = ca;
    }

    /// The kept client of the certificate `certificate_pem`, made by `build`
    /// the first time and anew when the certificate changed.
    pub fn compass_http<E>(
        &mut self,
        certificate_pem: &str,
        build: impl FnOnce() -> Result<reqwest::Client, E>,
    ) -> Result<reqwest::Client, E> {
        if let Some(kept) = &self.compass_http {
            if kept.certificate_pem == certificate_pem {
                return Ok(kept.http.clone());
            }
        }
        let http = build()?;
        self.compass_http = Some(KeptClient {
            certificate_pem: certificate_pem.to_string(),
            http: http.clone(),
        });
        Ok(http)
    }

    /// What decides whether this maintenance asks the Connector (see
    /// [`connector_check_due`](super::decide::connector_check_due)).
    pub fn connector_check(
        &self,
        now: Timestamp,
        interval: std::time::Duration,
        renewal_due: bool,
        refresh_asked: bool,
    ) -> ConnectorCheck {
        ConnectorCheck {
            now,
            last: self.connector_answered,
            interval,
            renewal_due,
            refresh_asked,
            director_refused: self.connector_wanted,
        }
    }

    /// The Connector answered at `now`.
    pub fn note_connector_checked(&mut self, now: Timestamp) {
        self.connector_answered = Some(now);
        self.connector_wanted = false;
    }

    /// The Director refused the certificate: ask the Connector next time.
    pub fn want_connector_check(&mut self) {
        self.connector_wanted = true;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::NamespacedName;
    use crate::controller::decide::{self, Cause, NextRunInput};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn origin(kind: &'static str) -> SourceOrigin {
        SourceOrigin {
            kind,
            name: NamespacedName {
                namespace: "kyma-system".into(),
                name: "compass-agent-configuration".into(),
            },
        }
    }

    fn answer(parameters_digest: &str) -> AnswerToToken {
        AnswerToToken {
            parameters_digest: parameters_digest.into(),
            csr_token: zeroize::Zeroizing::new("csr-token".into()),
            csr_info: CsrInfo {
                subject: "CN=r".into(),
                key_algorithm: "rsa2048".into(),
            },
            management_info: ManagementInfo::default(),
        }
    }

    #[test]
    fn nothing_is_remembered_at_start() {
        let remembered = Remembered::default();
        assert_eq!(remembered.backoff, Backoff::default());
        assert_eq!(remembered.configuration_source(), None);
        assert_eq!(remembered.runtime_id(), None);
        assert!(remembered.answer_to_token("any").is_none());
        assert_eq!(remembered.unstored_ca(), None);
        let check = remembered.connector_check(at(0), Duration::from_secs(3600), false, false);
        assert!(
            decide::connector_check_due(check),
            "the first maintenance asks"
        );
    }

    #[test]
    fn a_source_is_worth_a_log_line_only_when_it_changes() {
        let mut remembered = Remembered::default();
        assert!(remembered.note_source(&origin("Secret")));
        assert!(!remembered.note_source(&origin("Secret")));
        assert!(remembered.note_source(&origin("ConfigMap")));
        assert_eq!(
            remembered.configuration_source().as_deref(),
            Some("ConfigMap kyma-system/compass-agent-configuration")
        );
        remembered.note_runtime_id("runtime-1");
        assert_eq!(remembered.runtime_id().as_deref(), Some("runtime-1"));
    }

    #[test]
    fn the_answer_to_a_token_serves_only_its_parameters_and_outlives_a_reset() {
        let mut remembered = Remembered::default();
        remembered.keep_answer_to_token(answer("digest-1"));
        remembered.set_unstored_ca(Some("CA".into()));
        assert!(remembered.answer_to_token("digest-2").is_none());
        // A reset (a new configuration, a new leader term) forgets failures:
        // not a spent token's answer, nor a CA still to store.
        remembered.backoff = Backoff {
            consecutive_failures: 4,
            next_attempt_at: Some(at(300)),
        };
        remembered.backoff = decide::next_run(NextRunInput {
            now: at(0),
            cause: Cause::Reset,
            backoff: remembered.backoff,
            renewal_due_at: None,
            sync_period: Duration::from_secs(20),
            minimal_sync_time: Duration::from_secs(10),
            max_retry_delay: Duration::from_secs(300),
            jitter: 0.5,
        })
        .backoff;
        assert_eq!(remembered.backoff, Backoff::default());
        let kept = remembered.answer_to_token("digest-1").expect("kept");
        assert_eq!(kept.csr_token.as_str(), "csr-token");
        assert_eq!(remembered.unstored_ca().as_deref(), Some("CA"));
        remembered.forget_answer_to_token();
        assert!(remembered.answer_to_token("digest-1").is_none());
    }

    #[test]
    fn a_refusal_by_the_director_wants_the_connector_until_it_answers() {
        let hour = Duration::from_secs(3600);
        let mut remembered = Remembered::default();
        remembered.note_connector_checked(at(0));
        let idle = remembered.connector_check(at(60), hour, false, false);
        assert_eq!(idle.last, Some(at(0)));
        assert!(!decide::connector_check_due(idle));
        remembered.want_connector_check();
        assert!(decide::connector_check_due(remembered.connector_check(
            at(60),
            hour,
            false,
            false
        )));
        remembered.note_connector_checked(at(61));
        let answered = remembered.connector_check(at(62), hour, false, false);
        assert_eq!(answered.last, Some(at(61)));
        assert!(!answered.director_refused);
    }

    #[test]
    fn one_client_is_kept_per_certificate() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut remembered = Remembered::default();
        let built = std::cell::Cell::new(0);
        let mut client = |pem: &str| {
            remembered
                .compass_http(pem, || {
                    built.set(built.get() + 1);
                    Ok::<_, std::convert::Infallible>(reqwest::Client::new())
                })
                .unwrap()
        };
        client("certificate-1");
        client("certificate-1");
        assert_eq!(built.get(), 1, "kept while the certificate stays");
        client("certificate-2");
        assert_eq!(built.get(), 2, "built anew for a renewed certificate");
    }
}
