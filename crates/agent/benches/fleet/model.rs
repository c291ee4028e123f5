//! One runtime's agent, as Compass sees it: what a cycle asks, and when the
//! next cycle comes. Two policies: this agent's, driven by its own decision
//! functions (`controller::decide`, `certificates::renewal`) with the clock
//! replaced; and the Go agent's, as its code reads.
//!
//! Time is virtual: milliseconds since the simulation's epoch. A request that
//! Compass answers takes no time (the slow Director's answer excepted); one
//! that Compass does not answer fails after the request timeout.

use std::time::Duration;

use compass_runtime_agent::certificates::{renewal, CertificateInfo};
use compass_runtime_agent::controller::decide::{
    self, Backoff, Cause, ConnectorCheck, NextRunInput, Requeue, Run, Step,
};
use compass_runtime_agent::crd::compass_connection::{
    CompassConnectionSpec, CompassConnectionStatus, ConnectionState, SynchronizationStatus,
};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rand::rngs::SmallRng;
use rand::Rng;

pub const SECOND: u64 = 1_000;
pub const MINUTE: u64 = 60 * SECOND;
pub const HOUR: u64 = 60 * MINUTE;
pub const DAY: u64 = 24 * HOUR;

/// The simulation's time 0 (2027-01-15T08:00:00Z; any will do).
const EPOCH_SECONDS: i64 = 1_800_000_000;

/// The virtual time `t` as the agent's clock.
pub fn timestamp(t: u64) -> Timestamp {
    Timestamp::from_millisecond(EPOCH_SECONDS * 1_000 + t as i64).expect("a time in range")
}

/// The virtual time of a timestamp.
pub fn virtual_time(at: Timestamp) -> u64 {
    u64::try_from(at.as_millisecond() - EPOCH_SECONDS * 1_000).expect("after the epoch")
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The settings of a Kyma runtime (application-connector-manager's), and the
/// agent's own defaults for the rest.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `APP_CONTROLLER_SYNC_PERIOD`.
    pub sync_period: Duration,
    /// `APP_MINIMAL_COMPASS_SYNC_TIME`.
    pub minimal_sync_time: Duration,
    /// `APP_MAX_RETRY_DELAY`.
    pub max_retry_delay: Duration,
    /// `APP_CONNECTOR_CHECK_INTERVAL`.
    pub connector_check_interval: Duration,
    /// `APP_CERT_VALIDITY_RENEWAL_THRESHOLD`.
    pub renewal_threshold: f64,
    /// `APP_COMPASS_REQUEST_TIMEOUT` (the Go agent's is 30 s too).
    pub request_timeout: Duration,
    /// What the Connector issues: 2160h (spec.md, section 3).
    pub certificate_validity: Duration,
}

impl Settings {
    pub fn kyma() -> Settings {
        Settings {
            sync_period: Duration::from_secs(180),
            minimal_sync_time: Duration::from_secs(15),
            max_retry_delay: Duration::from_secs(300),
            connector_check_interval: Duration::from_secs(3600),
            renewal_threshold: 0.3,
            request_timeout: Duration::from_secs(30),
            certificate_validity: Duration::from_secs(2160 * 3600),
        }
    }
}

/// What Compass does with the requests sent at each moment.
#[derive(Clone, Debug, Default)]
pub struct Compass {
    /// Neither the Connector nor the Director answers a request sent in
    /// `[from, to)`: it fails after the request timeout.
    pub down: Option<(u64, u64)>,
    /// The Director answers a request sent in `[from, to)` after `.2`.
    pub slow_director: Option<(u64, u64, u64)>,
    pub timeout: u64,
}

/// Compass's answer to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Answered after this long.
    Ok(u64),
    /// Failed after this long.
    Failed(u64),
}

fn within(window: Option<(u64, u64)>, t: u64) -> bool {
    window.is_some_and(|(from, to)| from <= t && t < to)
}

impl Compass {
    pub fn connector(&self, t: u64) -> Answer {
        if within(self.down, t) {
            Answer::Failed(self.timeout)
        } else {
            Answer::Ok(0)
        }
    }

    pub fn director(&self, t: u64) -> Answer {
        if within(self.down, t) {
            return Answer::Failed(self.timeout);
        }
        match self.slow_director {
            Some((from, to, latency)) if from <= t && t < to => Answer::Ok(latency),
            _ => Answer::Ok(0),
        }
    }
}

/// Requests sent to Compass, counted per second from `start`.
#[derive(Clone, Debug)]
pub struct Traffic {
    /// In milliseconds, a whole second.
    pub start: u64,
    pub connector: Vec<u32>,
    pub director: Vec<u32>,
    /// `signCertificateSigningRequest` of a renewal (counted in `connector` too).
    pub renewals: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `configuration`, token- or certificate-secured.
    Configuration,
    /// `signCertificateSigningRequest` for a new connection.
    SignFirst,
    /// `signCertificateSigningRequest` for a renewal.
    SignRenewal,
    /// `runtime` + `applicationsForRuntime` (one page: up to 200 applications).
    Applications,
    /// `setRuntimeLabel`.
    Label,
}

impl Traffic {
    pub fn new(start: u64, end: u64) -> Traffic {
        assert_eq!(start % SECOND, 0);
        let seconds = usize::try_from(end.saturating_sub(start).div_ceil(SECOND)).unwrap();
        Traffic {
            start,
            connector: vec![0; seconds],
            director: vec![0; seconds],
            renewals: vec![0; seconds],
        }
    }

    pub fn record(&mut self, t: u64, request: Request) {
        let Some(second) = t.checked_sub(self.start).map(|d| (d / SECOND) as usize) else {
            return;
        };
        if second >= self.connector.len() {
            return;
        }
        match request {
            Request::Configuration | Request::SignFirst => self.connector[second] += 1,
            Request::SignRenewal => {
                self.connector[second] += 1;
                self.renewals[second] += 1;
            }
            Request::Applications | Request::Label => self.director[second] += 1,
        }
    }

    pub fn seconds(&self) -> usize {
        self.connector.len()
    }
}

/// What a cycle needs from around it.
pub struct World<'a> {
    pub compass: &'a Compass,
    pub traffic: &'a mut Traffic,
    pub rng: &'a mut SmallRng,
    pub settings: &'a Settings,
}

/// A certificate as the agent sees it, and when it becomes due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// This agent's renewal time ([`renewal::renewal_due_at`]); unused by the Go model.
    pub due_at: Timestamp,
}

/// The serial number of every certificate the real Connector issues (spec.md,
/// section 9), as x509-parser prints it.
pub const REAL_CONNECTOR_SERIAL: &str = "02";

/// The certificate the Connector issues at `t` to the runtime whose
/// SystemAuth id is `identity` (the subject's CN, spec.md section 9), valid
/// from the second of `t`.
pub fn issue(identity: u128, t: u64, settings: &Settings) -> Certificate {
    let not_before = Timestamp::from_second(timestamp(t).as_second()).unwrap();
    let not_after = not_before + SignedDuration::try_from(settings.certificate_validity).unwrap();
    let info = certificate_info(identity, not_before, not_after);
    let due_at = renewal::renewal_due_at(
        &info,
        settings.renewal_threshold,
        settings.minimal_sync_time,
    );
    Certificate {
        not_before,
        not_after,
        due_at,
    }
}

/// The certificate as the agent reads it from its Secret.
pub fn certificate_info(
    identity: u128,
    not_before: Timestamp,
    not_after: Timestamp,
) -> CertificateInfo {
    let common_name = uuid::Uuid::from_u128(identity).to_string();
    CertificateInfo {
        subject: format!(
            "C=DE, ST=Waldorf, L=Waldorf, O=Organization, OU=OrgUnit, CN={common_name}"
        ),
        common_name,
        serial: REAL_CONNECTOR_SERIAL.into(),
        not_before,
        not_after,
    }
}

/// This agent.
#[derive(Clone, Debug, PartialEq)]
pub struct Agent {
    /// When its next reconcile runs.
    pub next_at: u64,
    pub state: ConnectionState,
    /// What `Context` remembers between reconciles.
    pub backoff: Backoff,
    /// `status.connectionStatus.lastSync`.
    pub last_sync: Option<Timestamp>,
    /// `status.synchronizationStatus.lastAttempt`.
    pub last_attempt: Option<Timestamp>,
    /// When the certificate-secured Connector last answered.
    pub connector_last: Option<Timestamp>,
    pub certificate: Option<Certificate>,
    /// The SystemAuth id: the certificate's CN.
    pub identity: u128,
    /// The Runtime's URL labels are set in the Director.
    pub labelled: bool,
}

/// What one cycle came to, for the checks against `decide::transition`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CycleReport {
    pub step: Step,
    pub connector_requests: u32,
    pub director_requests: u32,
    pub requeue: Option<Requeue>,
    pub renewed: bool,
}

/// The scratch objects the decisions read (the status of `compass-connection`).
#[derive(Default)]
pub struct Scratch {
    spec: CompassConnectionSpec,
    status: CompassConnectionStatus,
    sync: SynchronizationStatus,
}

impl Agent {
    /// A runtime that is not connected yet: its first reconcile at `at`
    /// establishes the connection with the one-time token.
    pub fn new_to_connect(identity: u128, at: u64) -> Agent {
        Agent {
            next_at: at,
            state: ConnectionState::ConnectionFailed,
            backoff: Backoff::default(),
            last_sync: None,
            last_attempt: None,
            connector_last: None,
            certificate: None,
            identity,
            labelled: false,
        }
    }

    /// A runtime in its steady state: synchronized, its next cycle at `at`
    /// (scheduled by the one a sync period before), the Connector last asked
    /// `connector_cycles_ago` cycles before that one, its certificate issued
    /// at `issued` (at most now).
    pub fn steady(
        identity: u128,
        at: u64,
        connector_cycles_ago: u64,
        issued: u64,
        settings: &Settings,
    ) -> Agent {
        let period = millis(settings.sync_period);
        let previous = at as i64 - period as i64;
        let before = |t: i64| Timestamp::from_millisecond(EPOCH_SECONDS * 1_000 + t).unwrap();
        Agent {
            next_at: at,
            state: ConnectionState::Synchronized,
            backoff: Backoff {
                consecutive_failures: 0,
                next_attempt_at: Some(timestamp(at)),
            },
            last_sync: Some(before(previous)),
            last_attempt: Some(before(previous)),
            connector_last: Some(before(at as i64 - (connector_cycles_ago * period) as i64)),
            certificate: Some(issue(identity, issued, settings)),
            identity,
            labelled: true,
        }
    }

    pub fn synchronized(&self) -> bool {
        self.state == ConnectionState::Synchronized
    }

    /// One reconcile at `t`, as `reconcile_once` runs it: the step, the
    /// connection, the sync, the transition's requeue, and the next run.
    /// Returns when the next reconcile runs.
    pub fn cycle(&mut self, t: u64, world: &mut World<'_>, scratch: &mut Scratch) -> CycleReport {
        let settings = world.settings;
        let now = timestamp(t);
        scratch.status.connection_state = self.state;
        scratch.status.connection_status.last_sync = self.last_sync.map(Time);
        let step = decide::next_step(
            now,
            &scratch.spec,
            &scratch.status,
            settings.minimal_sync_time,
            self.backoff.next_attempt_at,
        );
        let mut report = CycleReport {
            step,
            connector_requests: 0,
            director_requests: 0,
            requeue: None,
            renewed: false,
        };
        if let Step::Wait(wait) = step {
            self.next_at = t + millis(wait).max(1);
            return report;
        }
        let mut clock = t;
        let mut send = |clock: &mut u64, request: Request, report: &mut CycleReport| {
            world.traffic.record(*clock, request);
            let answer = match request {
                Request::Applications | Request::Label => {
                    report.director_requests += 1;
                    world.compass.director(*clock)
                }
                _ => {
                    report.connector_requests += 1;
                    world.compass.connector(*clock)
                }
            };
            match answer {
                Answer::Ok(took) => {
                    *clock += took;
                    true
                }
                Answer::Failed(after) => {
                    *clock += after;
                    false
                }
            }
        };

        // The connection (connection.rs): `Some(credentials_gone)` on a failure.
        let failure: Option<bool> = match step {
            Step::Establish => {
                if send(&mut clock, Request::Configuration, &mut report)
                    && send(&mut clock, Request::SignFirst, &mut report)
                {
                    self.certificate = Some(issue(self.identity, clock, settings));
                    self.state = ConnectionState::Connected;
                    None
                } else {
                    Some(true)
                }
            }
            Step::Maintain => {
                let certificate = self.certificate.as_ref().expect("a connected runtime");
                assert!(now < certificate.not_after, "no certificate expires here");
                let due = now >= certificate.due_at;
                let ask = decide::connector_check_due(ConnectorCheck {
                    now,
                    last: self.connector_last,
                    interval: settings.connector_check_interval,
                    renewal_due: due,
                    refresh_asked: false,
                    director_refused: false,
                });
                if !ask {
                    None
                } else if !send(&mut clock, Request::Configuration, &mut report) {
                    Some(false)
                } else {
                    self.connector_last = Some(now);
                    if !due {
                        None
                    } else if send(&mut clock, Request::SignRenewal, &mut report) {
                        self.certificate = Some(issue(self.identity, clock, settings));
                        report.renewed = true;
                        None
                    } else {
                        Some(false)
                    }
                }
            }
            Step::Wait(_) => unreachable!(),
        };

        // The sync (synchronize.rs) and the transition's state and requeue.
        let requeue = match failure {
            Some(credentials_gone) => {
                self.state = if step == Step::Establish || credentials_gone {
                    ConnectionState::ConnectionFailed
                } else {
                    ConnectionState::ConnectionMaintenanceFailed
                };
                if self.state == ConnectionState::ConnectionFailed && step == Step::Maintain {
                    Requeue::Reconnect
                } else {
                    Requeue::Backoff
                }
            }
            None => {
                scratch.sync.last_attempt = self.last_attempt.map(Time);
                let sync = self.last_attempt.map(|_| &scratch.sync);
                if decide::sync_due(now, &scratch.spec, sync, settings.minimal_sync_time) {
                    self.last_attempt = Some(now);
                    if send(&mut clock, Request::Applications, &mut report) {
                        if !self.labelled {
                            // Both URL labels differ on a new Runtime.
                            let events = send(&mut clock, Request::Label, &mut report);
                            let console = send(&mut clock, Request::Label, &mut report);
                            self.labelled = events && console;
                        }
                        if self.labelled {
                            self.state = ConnectionState::Synchronized;
                            Requeue::AfterSuccess
                        } else {
                            self.state = ConnectionState::MetadataUpdateFailed;
                            Requeue::Backoff
                        }
                    } else {
                        self.state = ConnectionState::SynchronizationFailed;
                        Requeue::Backoff
                    }
                } else {
                    if !self.state.is_connected() {
                        self.state = ConnectionState::Connected;
                    }
                    Requeue::AfterSuccess
                }
            }
        };
        report.requeue = Some(requeue);
        self.last_sync = Some(now);
        let renewal_due_at = match failure {
            None => self.certificate.as_ref().map(|c| c.due_at),
            Some(_) => None,
        };
        let next = decide::next_run(NextRunInput {
            now,
            cause: Cause::Cycle(requeue),
            backoff: self.backoff,
            renewal_due_at,
            sync_period: settings.sync_period,
            minimal_sync_time: settings.minimal_sync_time,
            max_retry_delay: settings.max_retry_delay,
            jitter: world.rng.random(),
        });
        self.backoff = next.backoff;
        // kube-runtime requeues from the end of the reconcile.
        self.next_at = match next.run {
            Run::After(delay) => clock + millis(delay),
            Run::OnChange => unreachable!("only a deleted compass-connection waits for a change"),
        };
        report
    }

    /// Moves a runtime in its steady state (every cycle a success a sync
    /// period after the last, no renewal due) to its first cycle at or after
    /// `to`, as that many idle cycles would: the Connector is asked every
    /// `APP_CONNECTOR_CHECK_INTERVAL`, which is a whole number of periods.
    pub fn fast_forward(&mut self, to: u64, settings: &Settings) {
        let period = millis(settings.sync_period);
        let interval = millis(settings.connector_check_interval);
        assert_eq!(
            interval % period,
            0,
            "the Connector interval in whole periods"
        );
        assert!(self.synchronized() && self.backoff.consecutive_failures == 0);
        assert_eq!(self.backoff.next_attempt_at, Some(timestamp(self.next_at)));
        assert_eq!(self.last_sync, Some(timestamp(self.next_at - period)));
        if self.next_at >= to {
            return;
        }
        let next = self.next_at + (to - self.next_at).div_ceil(period) * period;
        let due = self.certificate.as_ref().expect("connected").due_at;
        assert!(timestamp(next) < due, "a renewal in the skipped time");
        let checked = virtual_time(self.connector_last.expect("asked once"));
        assert_eq!((self.next_at - checked) % period, 0);
        // Checks fall on cycles, one interval apart: the last one before `next`.
        let last_check = checked + (next - 1 - checked) / interval * interval;
        self.connector_last = Some(timestamp(last_check));
        self.next_at = next;
        self.backoff.next_attempt_at = Some(timestamp(next));
        self.last_sync = Some(timestamp(next - period));
        self.last_attempt = Some(timestamp(next - period));
    }
}

/// The Go agent (kyma-project/kyma, components/compass-runtime-agent): the
/// reconcile runs on controller-runtime's informer resync, every
/// `APP_CONTROLLER_SYNC_PERIOD` × a factor in [0.9, 1.1) drawn once at start
/// (controller-runtime's `calculateResyncPeriod`); the status writes start
/// reconciles too, which skip within `APP_MINIMAL_COMPASS_SYNC_TIME` of the
/// last attempt (whole seconds). Each cycle asks the Connector's
/// `configuration` (and renews when less than 0.3 of the validity is left:
/// `signCertificateSigningRequest`), then, if that worked, the Director. A
/// failed cycle waits for the next resync: no backoff.
#[derive(Clone, Debug, PartialEq)]
pub struct GoAgent {
    /// The next resync.
    pub next_at: u64,
    /// The resync period of this process.
    pub period: u64,
    pub state: ConnectionState,
    /// `status.connectionStatus.lastSync`, in Unix seconds.
    pub last_sync: Option<i64>,
    /// `status.synchronizationStatus.lastAttempt`, in Unix seconds.
    pub last_attempt: Option<i64>,
    /// notBefore, notAfter in Unix seconds.
    pub certificate: Option<(i64, i64)>,
    pub labelled: bool,
    /// Connects with the token at its first event (it starts then).
    pub to_connect: bool,
}

fn unix(t: u64) -> i64 {
    timestamp(t).as_second()
}

impl GoAgent {
    /// The resync period of one Go agent process.
    pub fn resync_period(settings: &Settings, rng: &mut SmallRng) -> u64 {
        let factor: f64 = rng.random::<f64>() / 5.0 + 0.9;
        (millis(settings.sync_period) as f64 * factor).round() as u64
    }

    /// A process that starts at `at` and connects with the token then.
    pub fn new_to_connect(at: u64, period: u64) -> GoAgent {
        GoAgent {
            next_at: at,
            period,
            state: ConnectionState::ConnectionFailed,
            last_sync: None,
            last_attempt: None,
            certificate: None,
            labelled: false,
            to_connect: true,
        }
    }

    /// A runtime in its steady state, its next resync at `at`.
    pub fn steady(at: u64, period: u64, issued: u64, settings: &Settings) -> GoAgent {
        let previous = unix(at) - (period / SECOND) as i64;
        let not_before = unix(issued);
        GoAgent {
            next_at: at,
            period,
            state: ConnectionState::Synchronized,
            last_sync: Some(previous),
            last_attempt: Some(previous),
            certificate: Some((
                not_before,
                not_before + settings.certificate_validity.as_secs() as i64,
            )),
            labelled: true,
            to_connect: false,
        }
    }

    pub fn synchronized(&self) -> bool {
        self.state == ConnectionState::Synchronized
    }

    /// `CompassConnection.ShouldRenewCertificate`.
    fn should_renew(&self, now: i64, settings: &Settings) -> bool {
        let (not_before, not_after) = self.certificate.expect("connected");
        let left = (not_after - now) as f64;
        left < (not_after - not_before) as f64 * settings.renewal_threshold
            || left < 2.0 * settings.minimal_sync_time.as_secs_f64()
    }

    /// One resync at `t` (or the start, when it connects).
    pub fn cycle(&mut self, t: u64, world: &mut World<'_>) -> CycleReport {
        let settings = world.settings;
        let mut report = CycleReport {
            step: Step::Maintain,
            connector_requests: 0,
            director_requests: 0,
            requeue: None,
            renewed: false,
        };
        let mut send = |clock: &mut u64, request: Request, report: &mut CycleReport| {
            world.traffic.record(*clock, request);
            let answer = match request {
                Request::Applications | Request::Label => {
                    report.director_requests += 1;
                    world.compass.director(*clock)
                }
                _ => {
                    report.connector_requests += 1;
                    world.compass.connector(*clock)
                }
            };
            match answer {
                Answer::Ok(took) => {
                    *clock += took;
                    true
                }
                Answer::Failed(after) => {
                    *clock += after;
                    false
                }
            }
        };
        let mut clock = t;
        if self.to_connect {
            // main: InitializeCompassConnection, before the manager starts;
            // the reconcile of the new object skips (minimal time).
            report.step = Step::Establish;
            if send(&mut clock, Request::Configuration, &mut report)
                && send(&mut clock, Request::SignFirst, &mut report)
            {
                self.certificate = Some((
                    unix(clock),
                    unix(clock) + settings.certificate_validity.as_secs() as i64,
                ));
                self.state = ConnectionState::Connected;
                self.to_connect = false;
            }
            self.last_sync = Some(unix(clock));
            self.next_at = t + self.period;
            return report;
        }
        self.next_at = t + self.period;
        let minimal = settings.minimal_sync_time.as_secs() as i64;
        if self.last_sync.is_some_and(|last| unix(t) - last < minimal) {
            report.step = Step::Wait(Duration::ZERO);
            return report;
        }
        let renew = self.should_renew(unix(t), settings);
        let maintained = send(&mut clock, Request::Configuration, &mut report)
            && (!renew || {
                let renewed = send(&mut clock, Request::SignRenewal, &mut report);
                if renewed {
                    self.certificate = Some((
                        unix(clock),
                        unix(clock) + settings.certificate_validity.as_secs() as i64,
                    ));
                    report.renewed = true;
                }
                renewed
            });
        self.last_sync = Some(unix(clock));
        if !maintained {
            self.state = ConnectionState::ConnectionMaintenanceFailed;
            return report;
        }
        if self
            .last_attempt
            .is_some_and(|last| unix(clock) - last < minimal)
        {
            return report;
        }
        if send(&mut clock, Request::Applications, &mut report) {
            if !self.labelled {
                let events = send(&mut clock, Request::Label, &mut report);
                let console = send(&mut clock, Request::Label, &mut report);
                self.labelled = events && console;
            }
            self.state = if self.labelled {
                ConnectionState::Synchronized
            } else {
                ConnectionState::MetadataUpdateFailed
            };
        } else {
            self.state = ConnectionState::SynchronizationFailed;
        }
        self.last_attempt = Some(unix(clock));
        report
    }

    /// Moves a runtime in its steady state to its first resync at or after `to`.
    pub fn fast_forward(&mut self, to: u64, settings: &Settings) {
        assert!(self.synchronized());
        if self.next_at >= to {
            return;
        }
        let next = self.next_at + (to - self.next_at).div_ceil(self.period) * self.period;
        assert!(
            !self.should_renew(unix(next), settings),
            "a renewal in the skipped time"
        );
        let previous = unix(next - self.period);
        self.next_at = next;
        self.last_sync = Some(previous);
        self.last_attempt = Some(previous);
    }
}
