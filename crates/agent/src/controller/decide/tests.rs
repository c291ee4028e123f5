//! The pure decisions of `controller::decide`, case by case.

use super::*;
use crate::crd::compass_connection::ConnectionStatus;
use jiff::SignedDuration;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

fn status(state: ConnectionState, last_sync: Option<i64>) -> CompassConnectionStatus {
    CompassConnectionStatus {
        connection_state: state,
        connection_status: ConnectionStatus {
            last_sync: last_sync.map(|s| Time(at(s))),
            ..Default::default()
        },
        ..Default::default()
    }
}

const MIN: Duration = Duration::from_secs(10);

#[test]
fn a_failed_connection_is_established_again() {
    let step = next_step(
        at(100),
        &Default::default(),
        &status(ConnectionState::ConnectionFailed, Some(0)),
        MIN,
        None,
    );
    assert_eq!(step, Step::Establish);
}

#[test]
fn every_other_state_is_maintained() {
    for state in ConnectionState::ALL
        .into_iter()
        .filter(|s| *s != ConnectionState::ConnectionFailed)
    {
        assert_eq!(
            next_step(
                at(100),
                &Default::default(),
                &status(state, Some(0)),
                MIN,
                None
            ),
            Step::Maintain
        );
    }
}

#[test]
fn an_attempt_younger_than_the_minimal_sync_time_waits_for_the_rest() {
    let step = next_step(
        at(4),
        &Default::default(),
        &status(ConnectionState::Synchronized, Some(0)),
        MIN,
        None,
    );
    assert_eq!(step, Step::Wait(Duration::from_secs(6)));
}

#[test]
fn resync_now_and_refresh_credentials_now_do_not_wait() {
    let spec = CompassConnectionSpec {
        resync_now: true,
        ..Default::default()
    };
    let step = next_step(
        at(1),
        &spec,
        &status(ConnectionState::Synchronized, Some(0)),
        MIN,
        Some(at(60)),
    );
    assert_eq!(step, Step::Maintain);
    let spec = CompassConnectionSpec {
        refresh_credentials_now: true,
        ..Default::default()
    };
    assert_eq!(
        next_step(
            at(1),
            &spec,
            &status(ConnectionState::Synchronized, Some(0)),
            MIN,
            None
        ),
        Step::Maintain
    );
}

#[test]
fn a_backoff_longer_than_the_minimal_time_is_honoured() {
    let step = next_step(
        at(20),
        &Default::default(),
        &status(ConnectionState::ConnectionFailed, Some(0)),
        MIN,
        Some(at(50)),
    );
    assert_eq!(step, Step::Wait(Duration::from_secs(30)));
}

#[test]
fn a_last_sync_in_the_future_does_not_block_forever() {
    let step = next_step(
        at(0),
        &Default::default(),
        &status(ConnectionState::Synchronized, Some(3600)),
        MIN,
        None,
    );
    assert_eq!(step, Step::Maintain);
}

#[test]
fn synchronization_follows_the_minimal_time_on_its_own_last_attempt() {
    let sync = SynchronizationStatus {
        last_attempt: Some(Time(at(0))),
        ..Default::default()
    };
    assert!(!sync_due(at(5), &Default::default(), Some(&sync), MIN));
    assert!(sync_due(at(10), &Default::default(), Some(&sync), MIN));
    assert!(sync_due(at(0), &Default::default(), None, MIN));
    let spec = CompassConnectionSpec {
        resync_now: true,
        ..Default::default()
    };
    assert!(sync_due(at(1), &spec, Some(&sync), MIN));
}

#[test]
fn backoff_doubles_is_jittered_and_capped() {
    let base = Duration::from_secs(10);
    let cap = Duration::from_secs(300);
    assert_eq!(
        backoff_delay(1, base, cap, 0.999_999),
        Duration::from_secs(10).mul_f64(0.999_999_5)
    );
    assert_eq!(backoff_delay(1, base, cap, 0.0), Duration::from_secs(5));
    assert_eq!(backoff_delay(3, base, cap, 0.0), Duration::from_secs(20));
    assert_eq!(backoff_delay(30, base, cap, 0.0), Duration::from_secs(150));
    assert!(backoff_delay(1000, base, cap, 1.0) <= cap);
}

#[test]
fn backoff_stays_within_its_cap_for_any_settings() {
    // Found by the backoff_and_lease fuzz target: a panic near
    // Duration::MAX, and 1-2 ns above a cap beyond 2^53 ns.
    let almost_one = 1.0 - f64::EPSILON / 2.0;
    assert!(backoff_delay(39, Duration::MAX, Duration::MAX, almost_one) <= Duration::MAX);
    let cap = Duration::new(9_909_326_555_114_763_765, 298_478_725);
    let base = Duration::from_secs(17_700_000_000_000_000_000);
    assert!(backoff_delay(u32::MAX, base, cap, almost_one) <= cap);
    assert_eq!(
        backoff_delay(1, Duration::from_secs(10), cap, f64::NAN),
        Duration::from_secs(5)
    );
}

#[test]
fn success_requeues_at_the_sync_period_or_at_renewal() {
    let period = Duration::from_secs(20);
    assert_eq!(requeue_after_success(at(0), period, None), period);
    assert_eq!(
        requeue_after_success(at(0), period, Some(at(5))),
        Duration::from_secs(5)
    );
    assert_eq!(
        requeue_after_success(at(10), period, Some(at(5))),
        Duration::from_secs(1)
    );
}

fn next_run_input(cause: Cause, backoff: Backoff) -> NextRunInput {
    NextRunInput {
        now: at(0),
        cause,
        backoff,
        renewal_due_at: None,
        sync_period: Duration::from_secs(20),
        minimal_sync_time: MIN,
        max_retry_delay: Duration::from_secs(300),
        jitter: 0.0,
    }
}

fn failures(consecutive_failures: u32, next_attempt_at: Option<i64>) -> Backoff {
    Backoff {
        consecutive_failures,
        next_attempt_at: next_attempt_at.map(at),
    }
}

#[test]
fn after_a_success_the_next_run_is_the_sync_period_and_failures_are_forgotten() {
    let next = next_run(next_run_input(
        Cause::Cycle(Requeue::AfterSuccess),
        failures(4, Some(-3)),
    ));
    assert_eq!(
        next,
        NextRun {
            run: Run::After(Duration::from_secs(20)),
            backoff: failures(0, Some(20)),
        }
    );
}

#[test]
fn a_renewal_sooner_than_the_sync_period_comes_first() {
    let next = next_run(NextRunInput {
        renewal_due_at: Some(at(7)),
        ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), Backoff::default())
    });
    assert_eq!(next.run, Run::After(Duration::from_secs(7)));
    assert_eq!(next.backoff, failures(0, Some(7)));

    // A renewal that is due already: the next cycle in a second, not at once.
    let overdue = next_run(NextRunInput {
        renewal_due_at: Some(at(-100)),
        ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), Backoff::default())
    });
    assert_eq!(overdue.run, Run::After(Duration::from_secs(1)));

    // One later than the period does not matter.
    let later = next_run(NextRunInput {
        renewal_due_at: Some(at(1000)),
        ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), Backoff::default())
    });
    assert_eq!(later.run, Run::After(Duration::from_secs(20)));
}

#[test]
fn credentials_that_stopped_working_reconnect_after_the_minimal_time_without_backoff() {
    let next = next_run(next_run_input(
        Cause::Cycle(Requeue::Reconnect),
        failures(6, Some(100)),
    ));
    assert_eq!(
        next,
        NextRun {
            run: Run::After(MIN),
            backoff: failures(0, Some(10)),
        }
    );
}

#[test]
fn failures_back_off_from_the_minimal_time_doubling_up_to_the_cap() {
    let mut backoff = Backoff::default();
    let mut delays = Vec::new();
    for _ in 0..8 {
        // The top of the jitter: the full delay.
        let next = next_run(NextRunInput {
            jitter: 1.0,
            ..next_run_input(Cause::Cycle(Requeue::Backoff), backoff)
        });
        let Run::After(delay) = next.run else {
            panic!("a failure waits: {next:?}")
        };
        let seconds = delay.as_secs();
        assert_eq!(
            next.backoff.next_attempt_at,
            Some(at(i64::try_from(seconds).unwrap()))
        );
        backoff = next.backoff;
        delays.push(seconds);
    }
    assert_eq!(backoff.consecutive_failures, 8);
    assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);

    // The bottom of the jitter: half of it.
    let low = next_run(next_run_input(
        Cause::Cycle(Requeue::Backoff),
        failures(2, None),
    ));
    assert_eq!(low.run, Run::After(Duration::from_secs(20)));
    assert_eq!(low.backoff, failures(3, Some(20)));
}

#[test]
fn the_backoff_starts_at_a_second_when_the_minimal_time_is_shorter() {
    let next = next_run(NextRunInput {
        minimal_sync_time: Duration::ZERO,
        ..next_run_input(Cause::Cycle(Requeue::Backoff), Backoff::default())
    });
    assert_eq!(next.run, Run::After(Duration::from_millis(500)));
}

#[test]
fn a_failed_write_backs_off_as_a_failed_cycle_does() {
    let backoff = failures(2, Some(5));
    let written = next_run(next_run_input(
        Cause::WriteFailed(WriteFailure::Other),
        backoff,
    ));
    let cycle = next_run(next_run_input(Cause::Cycle(Requeue::Backoff), backoff));
    assert_eq!(written, cycle);
    assert_eq!(written.backoff.consecutive_failures, 3);
}

#[test]
fn a_write_conflict_retries_shortly_and_a_deletion_waits_for_the_new_object() {
    let backoff = failures(3, Some(40));
    assert_eq!(
        next_run(next_run_input(
            Cause::WriteFailed(WriteFailure::Conflict),
            backoff
        )),
        NextRun {
            run: Run::After(Duration::from_millis(200)),
            backoff,
        }
    );
    assert_eq!(
        next_run(next_run_input(
            Cause::WriteFailed(WriteFailure::Gone),
            backoff
        )),
        NextRun {
            run: Run::OnChange,
            backoff,
        }
    );
}

#[test]
fn a_reset_forgets_failures_and_the_scheduled_attempt() {
    let next = next_run(next_run_input(Cause::Reset, failures(9, Some(300))));
    assert_eq!(
        next,
        NextRun {
            run: Run::After(Duration::ZERO),
            backoff: Backoff::default(),
        }
    );
    // So the next reconcile does not wait for it.
    assert_eq!(
        next_step(
            at(0),
            &Default::default(),
            &status(ConnectionState::ConnectionFailed, None),
            MIN,
            next.backoff.next_attempt_at,
        ),
        Step::Establish
    );
}

#[test]
fn a_delay_beyond_any_timestamp_schedules_no_attempt_time() {
    let next = next_run(NextRunInput {
        sync_period: Duration::MAX,
        ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), Backoff::default())
    });
    assert_eq!(next.run, Run::After(Duration::MAX));
    assert_eq!(next.backoff, Backoff::default());
}

fn certificate(from: i64, to: i64) -> CertificateInfo {
    CertificateInfo {
        subject: "CN=r".into(),
        common_name: "r".into(),
        serial: "01".into(),
        not_before: at(from),
        not_after: at(to),
    }
}

#[test]
fn conditions_report_connection_certificate_and_synchronization() {
    let conditions = conditions(
        &[],
        ConnectionState::Synchronized,
        "",
        Some(&certificate(0, 100)),
        at(50),
        Some(3),
    );
    let get = |kind: &str| conditions.iter().find(|c| c.type_ == kind).unwrap();
    assert_eq!(get("Connected").status, "True");
    assert_eq!(get("CertificateValid").status, "True");
    assert_eq!(get("Synchronized").status, "True");
    assert_eq!(get("Synchronized").observed_generation, Some(3));
}

#[test]
fn a_failure_is_the_reason_and_the_error_the_message() {
    let conditions = conditions(
        &[],
        ConnectionState::SynchronizationFailed,
        "applicationsForRuntime: HTTP status 500",
        Some(&certificate(0, 100)),
        at(150),
        None,
    );
    let get = |kind: &str| conditions.iter().find(|c| c.type_ == kind).unwrap();
    assert_eq!(get("Connected").status, "True");
    assert_eq!(get("CertificateValid").reason, "Expired");
    assert_eq!(get("Synchronized").reason, "SynchronizationFailed");
    assert!(get("Synchronized").message.contains("HTTP status 500"));
}

#[test]
fn transition_times_move_only_when_the_status_changes() {
    let first = conditions(
        &[],
        ConnectionState::Synchronized,
        "",
        Some(&certificate(0, 100)),
        at(10),
        None,
    );
    let same = conditions(
        &first,
        ConnectionState::Synchronized,
        "",
        Some(&certificate(0, 100)),
        at(20),
        None,
    );
    assert_eq!(first, same);
    let failed = conditions(
        &same,
        ConnectionState::ConnectionFailed,
        "x",
        None,
        at(30),
        None,
    );
    let connected = failed.iter().find(|c| c.type_ == "Connected").unwrap();
    assert_eq!(connected.last_transition_time, Time(at(30)));
    assert_eq!(
        connected.last_transition_time.0 - SignedDuration::from_secs(30),
        at(0)
    );
}
// ---- the status transition of a cycle ----

fn info() -> ManagementInfo {
    ManagementInfo {
        director_url: "https://director".into(),
        connector_url: "https://connector".into(),
    }
}

fn established() -> ConnectionOutcome {
    ConnectionOutcome::Established {
        certificate: certificate(0, 1000),
        management_info: info(),
        credentials_problem: None,
    }
}

fn maintained(renewed: bool) -> ConnectionOutcome {
    ConnectionOutcome::Maintained {
        certificate: certificate(50, 1050),
        renewed,
        management_info: None,
        credentials_problem: None,
    }
}

fn failed(credentials_gone: bool) -> ConnectionOutcome {
    ConnectionOutcome::Failed {
        error: "configuration: Compass refused the credentials".into(),
        category: "CredentialsRefused",
        credentials_gone,
    }
}

fn cycle<'a>(
    step: Step,
    spec: &'a CompassConnectionSpec,
    previous: &'a CompassConnectionStatus,
    connection: &'a ConnectionOutcome,
    sync: Option<SyncReport>,
) -> Transition {
    transition(Cycle {
        now: at(100),
        step,
        spec,
        previous,
        connection,
        sync,
        configuration_source: None,
        generation: Some(7),
        presented_token: None,
        judged_at: at(101),
    })
}

fn synchronized(previous_attempt: Option<i64>) -> SyncReport {
    SyncReport {
        state: ConnectionState::Synchronized,
        status: SynchronizationStatus {
            last_attempt: previous_attempt.map(|s| Time(at(s))),
            ..Default::default()
        },
        failure: None,
    }
}

#[test]
fn an_established_connection_is_connected_with_the_new_certificate_and_urls() {
    let spec = CompassConnectionSpec {
        refresh_credentials_now: true,
        ..Default::default()
    };
    let previous = status(ConnectionState::ConnectionFailed, Some(0));
    let result = cycle(Step::Establish, &spec, &previous, &established(), None);
    let cs = &result.status.connection_status;
    assert_eq!(result.status.connection_state, ConnectionState::Connected);
    assert_eq!(cs.established, Some(Time(at(100))));
    assert_eq!(cs.last_success, Some(Time(at(100))));
    assert_eq!(cs.last_sync, Some(Time(at(100))));
    assert_eq!(cs.certificate_status.acquired, Some(Time(at(100))));
    assert_eq!(cs.certificate_status.not_after, Some(Time(at(1000))));
    assert_eq!(result.spec.management_info, Some(info()));
    assert!(
        result.spec.clear_refresh_credentials_now,
        "a fresh certificate answers a renewal request"
    );
    assert!(!result.spec.clear_resync_now);
    assert_eq!(
        (result.failure, result.requeue),
        (None, Requeue::AfterSuccess)
    );
    assert_eq!(result.status.observed_generation, Some(7));
}

#[test]
fn a_failed_establishment_stays_connection_failed_and_backs_off() {
    let mut previous = status(ConnectionState::ConnectionFailed, Some(0));
    previous.connection_status.established = Some(Time(at(-50)));
    // Whatever the error says about the credentials, there were none.
    for gone in [false, true] {
        let result = cycle(
            Step::Establish,
            &Default::default(),
            &previous,
            &failed(gone),
            None,
        );
        assert_eq!(
            result.status.connection_state,
            ConnectionState::ConnectionFailed
        );
        assert_eq!(result.failure, Some("CredentialsRefused"));
        assert_eq!(result.requeue, Requeue::Backoff);
        let cs = &result.status.connection_status;
        assert!(cs.error.contains("refused"), "{}", cs.error);
        assert_eq!(
            cs.established,
            Some(Time(at(-50))),
            "earlier facts are kept"
        );
        assert_eq!(cs.last_sync, Some(Time(at(100))));
        assert!(result.spec.is_empty());
    }
}

#[test]
fn a_maintained_certificate_keeps_its_acquired_time_and_clears_old_errors() {
    let mut previous = status(ConnectionState::ConnectionMaintenanceFailed, Some(0));
    previous.connection_status.error = "old".into();
    previous.connection_status.certificate_status.acquired = Some(Time(at(10)));
    let spec = CompassConnectionSpec {
        management_info: info(),
        ..Default::default()
    };
    let result = cycle(Step::Maintain, &spec, &previous, &maintained(false), None);
    let cs = &result.status.connection_status;
    assert_eq!(result.status.connection_state, ConnectionState::Connected);
    assert_eq!(cs.error, "");
    assert_eq!(cs.certificate_status.acquired, Some(Time(at(10))));
    assert_eq!(cs.certificate_status.not_before, Some(Time(at(50))));
    assert_eq!(cs.renewed, None);
    assert!(result.spec.is_empty(), "the URLs in the spec stand");
    // Without an earlier acquired time, now.
    previous.connection_status.certificate_status.acquired = None;
    let result = cycle(Step::Maintain, &spec, &previous, &maintained(false), None);
    assert_eq!(
        result.status.connection_status.certificate_status.acquired,
        Some(Time(at(100)))
    );
}

#[test]
fn a_maintained_connection_keeps_a_synchronization_state_until_the_next_sync() {
    let previous = status(ConnectionState::SynchronizationFailed, Some(0));
    let result = cycle(
        Step::Maintain,
        &Default::default(),
        &previous,
        &maintained(false),
        None,
    );
    assert_eq!(
        result.status.connection_state,
        ConnectionState::SynchronizationFailed
    );
    assert_eq!(result.requeue, Requeue::AfterSuccess);
}

#[test]
fn a_renewal_is_recorded_and_answers_refresh_credentials_now() {
    let spec = CompassConnectionSpec {
        refresh_credentials_now: true,
        ..Default::default()
    };
    let mut previous = status(ConnectionState::Synchronized, Some(0));
    previous.connection_status.certificate_status.acquired = Some(Time(at(10)));
    let result = cycle(Step::Maintain, &spec, &previous, &maintained(true), None);
    let cs = &result.status.connection_status;
    assert_eq!(cs.renewed, Some(Time(at(100))));
    assert_eq!(cs.certificate_status.acquired, Some(Time(at(100))));
    assert!(result.spec.clear_refresh_credentials_now);
}

#[test]
fn credentials_that_stopped_working_reconnect_at_once_other_failures_back_off() {
    let previous = status(ConnectionState::Synchronized, Some(0));
    let gone = cycle(
        Step::Maintain,
        &Default::default(),
        &previous,
        &failed(true),
        None,
    );
    assert_eq!(
        gone.status.connection_state,
        ConnectionState::ConnectionFailed
    );
    assert_eq!(gone.requeue, Requeue::Reconnect);
    let not_gone = cycle(
        Step::Maintain,
        &Default::default(),
        &previous,
        &failed(false),
        None,
    );
    assert_eq!(
        not_gone.status.connection_state,
        ConnectionState::ConnectionMaintenanceFailed
    );
    assert_eq!(not_gone.requeue, Requeue::Backoff);
    assert_eq!(not_gone.failure, Some("CredentialsRefused"));
}

#[test]
fn a_synchronization_decides_the_state_and_clears_resync_now() {
    let spec = CompassConnectionSpec {
        resync_now: true,
        ..Default::default()
    };
    let previous = status(ConnectionState::Synchronized, Some(0));
    let ok = cycle(
        Step::Maintain,
        &spec,
        &previous,
        &maintained(false),
        Some(synchronized(Some(100))),
    );
    assert_eq!(ok.status.connection_state, ConnectionState::Synchronized);
    assert!(ok.spec.clear_resync_now);
    assert_eq!(ok.requeue, Requeue::AfterSuccess);
    assert_eq!(
        ok.status.synchronization_status.unwrap().last_attempt,
        Some(Time(at(100)))
    );
    let mut failing = synchronized(Some(100));
    failing.state = ConnectionState::SynchronizationFailed;
    failing.failure = Some("HTTPError");
    let failed = cycle(
        Step::Maintain,
        &spec,
        &previous,
        &maintained(false),
        Some(failing),
    );
    assert_eq!(
        failed.status.connection_state,
        ConnectionState::SynchronizationFailed
    );
    assert_eq!(
        (failed.failure, failed.requeue),
        (Some("HTTPError"), Requeue::Backoff)
    );
    assert!(failed.spec.clear_resync_now, "the requested sync ran");
    let synced = failed
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_SYNCHRONIZED)
        .unwrap();
    assert_eq!(synced.reason, "SynchronizationFailed");
}

#[test]
fn the_configuration_source_is_recorded_when_known_and_kept_otherwise() {
    let mut previous = status(ConnectionState::Synchronized, Some(0));
    previous.connection_status.configuration_source = "Secret ns/c".into();
    let kept = cycle(
        Step::Maintain,
        &Default::default(),
        &previous,
        &maintained(false),
        None,
    );
    assert_eq!(
        kept.status.connection_status.configuration_source,
        "Secret ns/c"
    );
    let read = transition(Cycle {
        configuration_source: Some("ConfigMap ns/c".into()),
        now: at(100),
        step: Step::Maintain,
        spec: &Default::default(),
        previous: &previous,
        connection: &maintained(false),
        sync: None,
        generation: None,
        presented_token: None,
        judged_at: at(100),
    });
    assert_eq!(
        read.status.connection_status.configuration_source,
        "ConfigMap ns/c"
    );
}

#[test]
fn single_failed_applications_leave_the_runtime_synchronized_as_the_original_does() {
    let none: Vec<String> = vec![];
    assert_eq!(
        after_apply(&none, 3, None, None),
        (ConnectionState::Synchronized, String::new(), None)
    );
    let failed = vec!["shop: forbidden".to_string()];
    assert_eq!(
        after_apply(&failed, 3, None, None),
        (
            ConnectionState::Synchronized,
            "1 of 3 applications could not be synchronized: shop: forbidden".into(),
            None
        )
    );
}

#[test]
fn labels_that_cannot_be_set_are_a_metadata_failure_naming_failed_applications_too() {
    let none: Vec<String> = vec![];
    assert_eq!(
        after_apply(&none, 3, Some("cannot label".into()), None),
        (
            ConnectionState::MetadataUpdateFailed,
            "cannot label".into(),
            Some("MetadataUpdateFailed")
        )
    );
    let failed = vec!["shop: forbidden".to_string()];
    let (state, error, failure) = after_apply(&failed, 3, Some("cannot label".into()), None);
    assert_eq!(state, ConnectionState::MetadataUpdateFailed);
    assert_eq!(failure, Some("MetadataUpdateFailed"));
    assert_eq!(
        error,
        "cannot label; 1 of 3 applications could not be synchronized: shop: forbidden"
    );
}

#[test]
fn a_list_that_did_not_come_whole_comes_first() {
    let failed = vec!["shop: forbidden".to_string()];
    let (state, error, failure) = after_apply(
        &failed,
        3,
        None,
        Some("the totalCount changed from 4 to 3 between pages".into()),
    );
    assert_eq!(state, ConnectionState::SynchronizationFailed);
    assert_eq!(failure, Some("InconsistentAnswer"));
    assert!(
        error.starts_with(
            "the Director's list of applications did not come whole (the totalCount changed"
        ) && error.contains("no Application was deleted")
            && error.ends_with("shop: forbidden"),
        "{error}"
    );
}

#[test]
fn the_failed_applications_named_in_the_status_are_bounded() {
    let failed: Vec<String> = (0..40)
        .map(|i| format!("app-{i}: {}", "x".repeat(2_000)))
        .collect();
    let summary = failed_applications(&failed, 1_000).unwrap();
    assert!(summary.starts_with("40 of 1000 applications could not be synchronized: app-0: "));
    assert!(
        summary.contains("app-4: ") && !summary.contains("app-5: "),
        "{summary}"
    );
    assert!(
        summary.ends_with("; and 35 more (see the agent's log)"),
        "{summary}"
    );
    assert!(summary.len() < 2_000, "{} bytes", summary.len());
}

#[test]
fn the_connector_is_asked_when_it_matters_and_else_once_an_interval() {
    let hour = Duration::from_secs(3600);
    let idle = ConnectorCheck {
        now: at(10_000),
        last: Some(at(10_000 - 600)),
        interval: hour,
        renewal_due: false,
        refresh_asked: false,
        director_refused: false,
    };
    assert!(!connector_check_due(idle), "an idle cycle within the hour");
    assert!(connector_check_due(ConnectorCheck {
        last: Some(at(10_000 - 3600)),
        ..idle
    }));
    assert!(
        connector_check_due(ConnectorCheck { last: None, ..idle }),
        "after a start"
    );
    assert!(connector_check_due(ConnectorCheck {
        renewal_due: true,
        ..idle
    }));
    assert!(connector_check_due(ConnectorCheck {
        refresh_asked: true,
        ..idle
    }));
    assert!(connector_check_due(ConnectorCheck {
        director_refused: true,
        ..idle
    }));
    assert!(
        connector_check_due(ConnectorCheck {
            interval: Duration::ZERO,
            ..idle
        }),
        "0: every cycle, as the original"
    );
}

#[test]
fn the_status_lists_at_most_the_cap_of_results_failures_first() {
    use crate::crd::compass_connection::{ApplicationSyncResult, MAX_LISTED_RESULTS};
    let result = |i: usize, operation| ApplicationSyncResult {
        name: format!("app-{i}"),
        application_id: format!("id-{i}"),
        operation,
        error: match operation {
            SyncOperation::Failed => "e".repeat(5_000),
            _ => String::new(),
        },
    };
    let mut results: Vec<_> = (0..240)
        .map(|i| result(i, SyncOperation::Unchanged))
        .collect();
    results.extend((240..250).map(|i| result(i, SyncOperation::Updated)));
    results.extend((250..253).map(|i| result(i, SyncOperation::Failed)));
    let (listed, not_listed) = listed_results(results);
    assert_eq!(listed.len(), MAX_LISTED_RESULTS);
    assert_eq!(not_listed, 153);
    let operations: Vec<_> = listed.iter().map(|r| r.operation).collect();
    assert_eq!(operations[..3], [SyncOperation::Failed; 3]);
    assert_eq!(operations[3..13], [SyncOperation::Updated; 10]);
    assert!(operations[13..]
        .iter()
        .all(|o| *o == SyncOperation::Unchanged));
    assert!(listed.iter().all(|r| r.error.len() <= 400));
    let size = serde_json::to_vec(&listed).unwrap().len();
    assert!(size < 64 * 1024, "{size} bytes");

    let (few, none) = listed_results(vec![result(1, SyncOperation::Created)]);
    assert_eq!((few.len(), none), (1, 0));
}

#[test]
fn an_abandoned_cycle_reports_the_step_that_did_not_finish_and_claims_no_success() {
    let mut synchronized = status(ConnectionState::Synchronized, Some(0));
    synchronized.connection_status.last_success = Some(Time(at(0)));
    synchronized.connection_status.certificate_status = CertificateStatus {
        acquired: Some(Time(at(0))),
        not_before: Some(Time(at(0))),
        not_after: Some(Time(at(1_000))),
    };
    synchronized.synchronization_status = Some(SynchronizationStatus {
        last_attempt: Some(Time(at(0))),
        last_successful_fetch: Some(Time(at(0))),
        last_successful_application: Some(Time(at(0))),
        ..Default::default()
    });

    // Stuck in the synchronization: SynchronizationFailed, which the
    // provisioning side accepts, with the error where Kyma's CRD keeps it.
    let after = after_deadline(
        &synchronized,
        AbandonedIn::Synchronization,
        "abandoned while waiting for: the Director's applications".into(),
        at(300),
        Some(4),
    );
    assert_eq!(
        after.connection_state,
        ConnectionState::SynchronizationFailed
    );
    let sync = after.synchronization_status.as_ref().unwrap();
    assert_eq!(
        sync.error,
        "abandoned while waiting for: the Director's applications"
    );
    assert_eq!(sync.last_attempt, Some(Time(at(300))));
    assert_eq!(
        sync.last_successful_fetch,
        Some(Time(at(0))),
        "no success claimed"
    );
    assert_eq!(after.connection_status.last_success, Some(Time(at(0))));
    assert_eq!(after.connection_status.last_sync, Some(Time(at(300))));
    assert!(after.connection_status.error.is_empty());
    let condition = |kind: &str| {
        after
            .conditions
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap()
            .clone()
    };
    assert_eq!(condition(CONDITION_SYNCHRONIZED).status, "False");
    assert_eq!(condition(CONDITION_CONNECTED).status, "True");
    assert_eq!(
        condition(CONDITION_CERTIFICATE_VALID).status,
        "True",
        "the certificate in the status is still valid"
    );
    assert_eq!(after.observed_generation, Some(4));

    // Stuck with the Connector: the connection's maintenance failed.
    let after = after_deadline(
        &synchronized,
        AbandonedIn::Connection,
        "abandoned while waiting for: the Connector's configuration".into(),
        at(300),
        None,
    );
    assert_eq!(
        after.connection_state,
        ConnectionState::ConnectionMaintenanceFailed
    );
    assert!(after.connection_status.error.contains("Connector"));
    assert_eq!(
        after.synchronization_status,
        synchronized.synchronization_status
    );

    // A connection that had failed stays failed, whatever was stuck.
    let failed = status(ConnectionState::ConnectionFailed, Some(0));
    for step in [AbandonedIn::Connection, AbandonedIn::Synchronization] {
        let after = after_deadline(&failed, step, "abandoned".into(), at(300), None);
        assert_eq!(after.connection_state, ConnectionState::ConnectionFailed);
        assert_eq!(after.connection_status.error, "abandoned");
    }
}

#[test]
fn the_first_success_after_failures_or_a_start_waits_between_one_and_two_periods() {
    let period = Duration::from_secs(180);
    for backoff in [failures(3, Some(-5)), Backoff::default()] {
        assert_eq!(period_after_success(backoff, period, 0.0), period);
        assert_eq!(
            period_after_success(backoff, period, 0.5),
            Duration::from_secs(270)
        );
        let longest = period_after_success(backoff, period, 0.999_999);
        assert!(longest > Duration::from_secs(359) && longest < 2 * period);
        // Out-of-range samples stay within the two periods.
        assert_eq!(period_after_success(backoff, period, f64::NAN), period);
        assert_eq!(period_after_success(backoff, period, 7.0), 2 * period);
        assert_eq!(
            period_after_success(backoff, Duration::MAX, 0.999),
            Duration::MAX
        );
    }
    // Through next_run: stretched, and the renewal still comes first.
    let next = next_run(NextRunInput {
        jitter: 0.5,
        ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), failures(6, Some(-3)))
    });
    assert_eq!(next.run, Run::After(Duration::from_secs(30)));
    assert_eq!(next.backoff, failures(0, Some(30)));
    let renewal_first = next_run(NextRunInput {
        jitter: 0.5,
        renewal_due_at: Some(at(25)),
        ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), Backoff::default())
    });
    assert_eq!(renewal_first.run, Run::After(Duration::from_secs(25)));
}

#[test]
fn a_runtime_in_its_steady_state_keeps_the_plain_period() {
    let period = Duration::from_secs(180);
    let steady = failures(0, Some(0));
    for jitter in [0.0, 0.3, 0.999] {
        assert_eq!(period_after_success(steady, period, jitter), period);
        let next = next_run(NextRunInput {
            jitter,
            ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), steady)
        });
        assert_eq!(next.run, Run::After(Duration::from_secs(20)));
    }
}

#[test]
fn a_fleet_that_returns_together_spreads_over_a_period() {
    // 1,000 runtimes synchronized within the same second after an outage:
    // their next cycles fall into every tenth of the period beyond it.
    let period = Duration::from_secs(180);
    let mut tenths = [0u32; 10];
    for i in 0..1000 {
        let jitter = f64::from(i) / 1000.0;
        let wait = period_after_success(failures(5, Some(0)), period, jitter);
        let beyond = (wait - period).as_secs_f64() / period.as_secs_f64();
        tenths[(beyond * 10.0) as usize] += 1;
    }
    assert_eq!(tenths, [100; 10]);
}
