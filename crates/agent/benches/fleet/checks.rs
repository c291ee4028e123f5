//! The model against what was measured and decided elsewhere. Any
//! disagreement stops the bench (and `cargo test --all-targets`, which runs
//! these checks alone): the fleet's figures would be of another agent.
//!
//! - One runtime of this agent at Kyma's settings: 1 Director and 0
//!   Connector requests per idle cycle, 21 requests an hour (20 Director, 1
//!   Connector); the Go agent 40 (BENCHMARKS.md, "Compass traffic per
//!   runtime": the per-cycle figures are what tests/compass_traffic.rs
//!   asserts against the real agent and compass-sim).
//! - The model's state and requeue after a cycle are those of
//!   `decide::transition` for the same outcome.
//! - Skipping idle days (`fast_forward`) leaves each runtime as simulating
//!   them does.

use compass_runtime_agent::certificates::CertificateInfo;
use compass_runtime_agent::controller::decide::{
    self, ConnectionOutcome, Cycle, Requeue, Step, SyncReport,
};
use compass_runtime_agent::crd::compass_connection::{
    CompassConnectionSpec, CompassConnectionStatus, ConnectionState, ManagementInfo,
    SynchronizationStatus,
};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::model::{
    certificate_info, timestamp, Agent, Compass, CycleReport, GoAgent, Scratch, Settings, Traffic,
    World, DAY, HOUR, SECOND,
};
use crate::sim::{self, START};

pub fn run(settings: &Settings) {
    one_runtime_of_this_agent(settings);
    one_go_agent(settings);
    states_and_requeues_are_the_agents(settings);
    fast_forward_is_simulation(settings);
}

fn one_runtime_of_this_agent(settings: &Settings) {
    // Its Connector check due at the first cycle.
    let mut agent = Agent::steady(1, START, 20, START - DAY, settings);
    let compass = Compass {
        timeout: settings.request_timeout.as_millis() as u64,
        ..Compass::default()
    };
    let mut traffic = Traffic::new(START, START + DAY);
    let mut rng = SmallRng::seed_from_u64(1);
    let mut scratch = Scratch::default();
    let mut world = World {
        compass: &compass,
        traffic: &mut traffic,
        rng: &mut rng,
        settings,
    };
    let mut cycles = 0;
    while agent.next_at < START + DAY {
        let at = agent.next_at;
        let report = agent.cycle(at, &mut world, &mut scratch);
        cycles += 1;
        let asked_connector = (at - START) % HOUR == 0;
        let expected = CycleReport {
            step: Step::Maintain,
            connector_requests: u32::from(asked_connector),
            director_requests: 1,
            requeue: Some(Requeue::AfterSuccess),
            renewed: false,
        };
        assert_eq!(
            report,
            expected,
            "the model of one runtime disagrees with the measured cycle at {}s",
            (at - START) / SECOND
        );
    }
    assert_eq!(cycles, 480, "cycles in a day at a 180 s sync period");
    for hour in 0..24 {
        let seconds = (hour * 3600) as usize..((hour + 1) * 3600) as usize;
        let connector: u32 = traffic.connector[seconds.clone()].iter().sum();
        let director: u32 = traffic.director[seconds].iter().sum();
        assert_eq!(
            (director, connector),
            (20, 1),
            "this agent's requests in hour {hour}: 20 Director and 1 Connector measured"
        );
    }
}

fn one_go_agent(settings: &Settings) {
    let mut go = GoAgent::steady(START, 180 * SECOND, START - DAY, settings);
    let compass = Compass {
        timeout: settings.request_timeout.as_millis() as u64,
        ..Compass::default()
    };
    let mut traffic = Traffic::new(START, START + DAY);
    let mut rng = SmallRng::seed_from_u64(1);
    let mut world = World {
        compass: &compass,
        traffic: &mut traffic,
        rng: &mut rng,
        settings,
    };
    while go.next_at < START + DAY {
        let report = go.cycle(go.next_at, &mut world);
        assert_eq!(
            (report.connector_requests, report.director_requests),
            (1, 1),
            "the Go agent asks the Connector and the Director every cycle"
        );
    }
    let total: u32 = traffic.connector.iter().chain(&traffic.director).sum();
    assert_eq!(total, 24 * 40, "the Go agent: 40 requests an hour");
}

/// Runs one cycle of an agent against `compass` and returns it with the report.
fn one_cycle(mut agent: Agent, compass: &Compass, settings: &Settings) -> (Agent, CycleReport) {
    let mut traffic = Traffic::new(START, START + DAY);
    let mut rng = SmallRng::seed_from_u64(2);
    let mut world = World {
        compass,
        traffic: &mut traffic,
        rng: &mut rng,
        settings,
    };
    let at = agent.next_at;
    let report = agent.cycle(at, &mut world, &mut Scratch::default());
    (agent, report)
}

fn states_and_requeues_are_the_agents(settings: &Settings) {
    let timeout = settings.request_timeout.as_millis() as u64;
    let up = Compass {
        timeout,
        ..Compass::default()
    };
    let down = Compass {
        down: Some((0, u64::MAX)),
        timeout,
        ..Compass::default()
    };
    let steady = || Agent::steady(7, START, 1, START - DAY, settings);
    let due = || Agent::steady(7, START, 20, START - DAY, settings);
    let certificate = |agent: &Agent| -> CertificateInfo {
        let c = agent.certificate.as_ref().unwrap();
        certificate_info(agent.identity, c.not_before, c.not_after)
    };
    let failed = |gone| ConnectionOutcome::Failed {
        error: "timed out".into(),
        category: "Timeout",
        credentials_gone: gone,
    };
    let sync = |state: ConnectionState, failure: Option<&'static str>| SyncReport {
        state,
        status: SynchronizationStatus::default(),
        failure,
    };
    struct Case {
        name: &'static str,
        before: Agent,
        compass: Compass,
        outcome: Box<dyn Fn(&Agent) -> ConnectionOutcome>,
        sync: Option<SyncReport>,
    }
    let maintained = move |agent: &Agent| ConnectionOutcome::Maintained {
        certificate: certificate(agent),
        renewed: false,
        management_info: None,
        credentials_problem: None,
    };
    let established = move |agent: &Agent| ConnectionOutcome::Established {
        certificate: certificate(agent),
        management_info: ManagementInfo::default(),
        credentials_problem: None,
    };
    let cases = [
        Case {
            name: "an idle cycle",
            before: steady(),
            compass: up.clone(),
            outcome: Box::new(maintained),
            sync: Some(sync(ConnectionState::Synchronized, None)),
        },
        Case {
            // The Connector check is not due: only the Director is asked.
            name: "the Director down",
            before: steady(),
            compass: down.clone(),
            outcome: Box::new(maintained),
            sync: Some(sync(
                ConnectionState::SynchronizationFailed,
                Some("Timeout"),
            )),
        },
        Case {
            name: "the Connector down at its check",
            before: due(),
            compass: down.clone(),
            outcome: Box::new(move |_: &Agent| failed(false)),
            sync: None,
        },
        Case {
            name: "a new connection",
            before: Agent::new_to_connect(7, START),
            compass: up.clone(),
            outcome: Box::new(established),
            sync: Some(sync(ConnectionState::Synchronized, None)),
        },
        Case {
            name: "a new connection with Compass down",
            before: Agent::new_to_connect(7, START),
            compass: down,
            outcome: Box::new(move |_: &Agent| failed(true)),
            sync: None,
        },
    ];
    for case in cases {
        let before = case.before.clone();
        let (after, report) = one_cycle(case.before, &case.compass, settings);
        let spec = CompassConnectionSpec::default();
        let previous = CompassConnectionStatus {
            connection_state: before.state,
            ..CompassConnectionStatus::default()
        };
        let connection = (case.outcome)(&after);
        let now = timestamp(before.next_at);
        let transition = decide::transition(Cycle {
            now,
            step: report.step,
            spec: &spec,
            previous: &previous,
            connection: &connection,
            sync: case.sync,
            configuration_source: None,
            generation: None,
            presented_token: None,
            judged_at: now,
        });
        assert_eq!(
            (after.state, report.requeue),
            (transition.status.connection_state, Some(transition.requeue)),
            "{}: the model's state and requeue are not decide::transition's",
            case.name
        );
    }
}

fn fast_forward_is_simulation(settings: &Settings) {
    let compass = Compass {
        timeout: settings.request_timeout.as_millis() as u64,
        ..Compass::default()
    };
    let to = START + 2 * DAY + 1234;
    let runtimes = 60;

    let mut simulated = sim::provisioned_agents(runtimes, settings, 3);
    let mut skipped = sim::provisioned_agents(runtimes, settings, 3);
    let mut traffic = Traffic::new(START, to);
    simulated.run(START, to, &compass, &mut traffic, None);
    skipped.run(START, START + DAY / 4, &compass, &mut traffic, None);
    skipped.fast_forward(to);
    assert!(
        simulated.runtimes == skipped.runtimes,
        "fast-forwarding idle days is not what simulating them does (this agent)"
    );

    let mut simulated = sim::provisioned_go(runtimes, settings, 3);
    let mut skipped = sim::provisioned_go(runtimes, settings, 3);
    simulated.run(START, to, &compass, &mut traffic, None);
    skipped.run(START, START + DAY / 4, &compass, &mut traffic, None);
    skipped.fast_forward(to);
    assert!(
        simulated.runtimes == skipped.runtimes,
        "fast-forwarding idle days is not what simulating them does (Go agent)"
    );
}
