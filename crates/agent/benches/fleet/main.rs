//! A fleet of runtimes in virtual time: what each agent asks Compass, and
//! when, for 1,000, 10,000 and 100,000 runtimes. Prints figures and the
//! goals of issue 31; a failed goal is reported, never a panic. The model of
//! one runtime is checked first against the figures measured on the real
//! agent (BENCHMARKS.md, "Compass traffic per runtime"): a model that
//! disagrees stops the bench.
//!
//!     cargo bench -p compass-runtime-agent --bench fleet
//!     FLEET_SIZES=1000,10000 cargo bench -p compass-runtime-agent --bench fleet
//!
//! Writes `target/fleet/fleet.csv` (requests per second, per minute, of
//! every run), `docs/fleet/figures.csv` (the table) and `docs/fleet/fleet.png`
//! (the chart of the largest fleet). `FLEET_OUT` moves the CSV, `FLEET_CHART`
//! the chart and the table.
//!
//! Each runtime runs the agent's own decisions (`controller::decide`:
//! `next_step`, `connector_check_due`, `sync_due`, `next_run`;
//! `certificates::renewal::renewal_due_at`) with the clock replaced by a
//! virtual one, and the Go agent's policy as its code reads (model.rs).
//! Kyma's settings: sync period 180 s, minimal sync time 15 s, the agent's
//! Connector check every hour and backoff up to 5 min, request timeout 30 s,
//! certificates valid 2160h renewed at 0.3 of their validity, every one
//! with the serial number 2, as the real Connector issues them.

mod chart;
mod checks;
mod model;
mod report;
mod sim;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use model::{Compass, Settings, Traffic, DAY, HOUR, MINUTE};
use sim::{Fleet, Recovery, Runtime, START};

/// The scenarios of issue 31.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// A day at Kyma's settings.
    Steady,
    /// Every certificate issued in the same minute: the provisioning day, and
    /// the days in which the certificates are renewed.
    Provisioned,
    /// Compass down from 02:00 to 02:30.
    Outage,
    /// Each Director request takes 2 s from 02:00 to 03:00.
    SlowDirector,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::Steady,
        Scenario::Provisioned,
        Scenario::Outage,
        Scenario::SlowDirector,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Provisioned => "provisioned",
            Scenario::Outage => "outage",
            Scenario::SlowDirector => "slow-director",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Policy {
    /// This agent.
    Ours,
    /// The Go agent.
    Go,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Ours => "rust",
            Policy::Go => "go",
        }
    }
}

/// The outage: 02:00 to 02:30 of the day.
pub const OUTAGE: (u64, u64) = (START + 2 * HOUR, START + 2 * HOUR + 30 * MINUTE);
/// The slow Director: 02:00 to 03:00, 2 s an answer.
pub const SLOW: (u64, u64, u64) = (START + 2 * HOUR, START + 3 * HOUR, 2_000);
/// The provisioned fleet's first hours: the provisioning minute, and
/// whether the cycles stay in step.
pub const PROVISIONING: (u64, u64) = (START, START + 6 * HOUR);
/// The provisioned fleet's renewal days: every renewal of this agent falls
/// between 0.7 - 0.03 and 0.7 of the validity (60.3 to 63 days), the Go
/// agent's at 0.7 (63 days, at its next resync).
pub const RENEWAL_DAYS: (u64, u64) = (START + 60 * DAY + 6 * HOUR, START + 63 * DAY + 6 * HOUR);

/// One run: a scenario, a policy, a fleet size.
pub struct Run {
    pub scenario: Scenario,
    pub policy: Policy,
    pub runtimes: usize,
    /// The simulated stretches, in order.
    pub segments: Vec<Traffic>,
    pub recovery: Recovery,
    /// Wall time of the run.
    pub seconds: f64,
}

fn compass(scenario: Scenario, settings: &Settings) -> Compass {
    let timeout = settings.request_timeout.as_millis() as u64;
    match scenario {
        Scenario::Outage => Compass {
            down: Some(OUTAGE),
            timeout,
            ..Compass::default()
        },
        Scenario::SlowDirector => Compass {
            slow_director: Some(SLOW),
            timeout,
            ..Compass::default()
        },
        Scenario::Steady | Scenario::Provisioned => Compass {
            timeout,
            ..Compass::default()
        },
    }
}

fn simulate<R: Runtime>(
    mut fleet: Fleet<R>,
    scenario: Scenario,
    settings: &Settings,
) -> (Vec<Traffic>, Recovery) {
    let compass = compass(scenario, settings);
    match scenario {
        Scenario::Provisioned => {
            let mut first = Traffic::new(PROVISIONING.0, PROVISIONING.1);
            fleet.run(PROVISIONING.0, PROVISIONING.1, &compass, &mut first, None);
            // Nothing but idle cycles until the first renewal can come.
            fleet.fast_forward(RENEWAL_DAYS.0);
            let mut renewals = Traffic::new(RENEWAL_DAYS.0, RENEWAL_DAYS.1);
            fleet.run(
                RENEWAL_DAYS.0,
                RENEWAL_DAYS.1,
                &compass,
                &mut renewals,
                None,
            );
            (vec![first, renewals], Recovery::default())
        }
        _ => {
            let mut traffic = Traffic::new(START, START + DAY);
            let watch = (scenario == Scenario::Outage).then_some(OUTAGE.1);
            let recovery = fleet.run(START, START + DAY, &compass, &mut traffic, watch);
            (vec![traffic], recovery)
        }
    }
}

fn seed(scenario: Scenario, runtimes: usize) -> u64 {
    0x5eed_0000 + scenario as u64 * 1_000_003 + runtimes as u64
}

fn run(scenario: Scenario, policy: Policy, runtimes: usize, settings: &Settings) -> Run {
    let started = Instant::now();
    let seed = seed(scenario, runtimes);
    let (segments, recovery) = match (policy, scenario) {
        (Policy::Ours, Scenario::Provisioned) => simulate(
            sim::provisioned_agents(runtimes, settings, seed),
            scenario,
            settings,
        ),
        (Policy::Ours, _) => simulate(
            sim::steady_agents(runtimes, settings, seed),
            scenario,
            settings,
        ),
        (Policy::Go, Scenario::Provisioned) => simulate(
            sim::provisioned_go(runtimes, settings, seed),
            scenario,
            settings,
        ),
        (Policy::Go, _) => simulate(sim::steady_go(runtimes, settings, seed), scenario, settings),
    };
    Run {
        scenario,
        policy,
        runtimes,
        segments,
        recovery,
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn sizes() -> Vec<usize> {
    match std::env::var("FLEET_SIZES") {
        Ok(sizes) => sizes
            .split(',')
            .map(|s| {
                s.trim()
                    .replace('_', "")
                    .parse()
                    .expect("FLEET_SIZES: numbers, comma-separated")
            })
            .collect(),
        Err(_) => vec![1_000, 10_000, 100_000],
    }
}

fn main() {
    // `cargo test --benches` runs this too: only the model's checks then.
    let bench = std::env::args().any(|a| a == "--bench");
    let settings = Settings::kyma();
    let started = Instant::now();
    checks::run(&settings);
    println!(
        "model checks passed: one runtime of this agent makes 21 Compass requests an hour at Kyma's settings (20 Director, 1 Connector; idle cycles: 1 Director, 0 Connector), one Go agent 40 (a Connector and a Director request each cycle); the model's states and requeues are those of decide::transition; fast-forwarding idle days equals simulating them"
    );
    if !bench {
        return;
    }
    let sizes = sizes();
    let mut jobs = Vec::new();
    for &n in &sizes {
        for scenario in Scenario::ALL {
            for policy in [Policy::Ours, Policy::Go] {
                jobs.push((scenario, policy, n));
            }
        }
    }
    // The largest first, so that two workers end together.
    jobs.sort_by_key(|&(scenario, _, n)| {
        std::cmp::Reverse(
            n * if scenario == Scenario::Provisioned {
                5
            } else {
                1
            },
        )
    });
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(2);
    let next = AtomicUsize::new(0);
    let runs = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(scenario, policy, n)) = jobs.get(i) else {
                    break;
                };
                let done = run(scenario, policy, n, &settings);
                eprintln!(
                    "  {:>13} {:>4} {:>7} runtimes: {:.1} s",
                    scenario.name(),
                    policy.name(),
                    n,
                    done.seconds
                );
                runs.lock().unwrap().push(done);
            });
        }
    });
    let mut runs = runs.into_inner().unwrap();
    runs.sort_by_key(|r| (r.runtimes, r.scenario, r.policy));
    let simulated = started.elapsed().as_secs_f64();
    report::print_and_write(&runs, &settings, workers, simulated);
}
