//! The fleet in virtual time, event by event. Compass's answers depend on
//! the time alone (not on the load), so runtimes do not interact: each one's
//! cycles are run in turn from one next-run time to the next, with its own
//! random numbers (the backoff's jitter), and its requests are added to the
//! fleet's counts per second.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::model::{Agent, Compass, GoAgent, Scratch, Settings, Traffic, World, DAY, MINUTE};

/// One of the two policies, for the event loop.
pub trait Runtime {
    fn next_at(&self) -> u64;
    fn synchronized(&self) -> bool;
    fn cycle(&mut self, t: u64, world: &mut World<'_>, scratch: &mut Scratch);
    fn fast_forward(&mut self, to: u64, settings: &Settings);
}

impl Runtime for Agent {
    fn next_at(&self) -> u64 {
        self.next_at
    }
    fn synchronized(&self) -> bool {
        Agent::synchronized(self)
    }
    fn cycle(&mut self, t: u64, world: &mut World<'_>, scratch: &mut Scratch) {
        Agent::cycle(self, t, world, scratch);
    }
    fn fast_forward(&mut self, to: u64, settings: &Settings) {
        Agent::fast_forward(self, to, settings);
    }
}

impl Runtime for GoAgent {
    fn next_at(&self) -> u64 {
        self.next_at
    }
    fn synchronized(&self) -> bool {
        GoAgent::synchronized(self)
    }
    fn cycle(&mut self, t: u64, world: &mut World<'_>, _: &mut Scratch) {
        GoAgent::cycle(self, t, world);
    }
    fn fast_forward(&mut self, to: u64, settings: &Settings) {
        GoAgent::fast_forward(self, to, settings);
    }
}

/// When every runtime was `Synchronized` again after a moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Recovery {
    /// How many runtimes were not synchronized at the moment.
    pub unsynchronized_at_return: usize,
    /// The start of the last cycle that synchronized one of them (Compass
    /// answers at once then), if every one had such a cycle.
    pub all_synchronized_at: Option<u64>,
}

pub struct Fleet<R> {
    pub runtimes: Vec<R>,
    pub settings: Settings,
    /// Each runtime's random numbers in a run come from this and its index.
    pub seed: u64,
}

impl<R: Runtime> Fleet<R> {
    /// Runs every cycle in `[from, to)`, counting requests in `traffic`;
    /// watches the recovery from `watch` on, if given.
    pub fn run(
        &mut self,
        from: u64,
        to: u64,
        compass: &Compass,
        traffic: &mut Traffic,
        watch: Option<u64>,
    ) -> Recovery {
        let mut scratch = Scratch::default();
        let mut unsynchronized = 0;
        let mut latest: Option<u64> = None;
        let mut all = true;
        for (i, runtime) in self.runtimes.iter_mut().enumerate() {
            assert!(runtime.next_at() >= from, "a runtime left behind");
            let mut rng = SmallRng::seed_from_u64(
                self.seed ^ from ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            let mut world = World {
                compass,
                traffic: &mut *traffic,
                rng: &mut rng,
                settings: &self.settings,
            };
            // Not looked at yet, waiting to be synchronized, done.
            let mut waiting: Option<bool> = None;
            while runtime.next_at() < to {
                let t = runtime.next_at();
                if let Some(at) = watch {
                    if t >= at && waiting.is_none() {
                        waiting = Some(!runtime.synchronized());
                        unsynchronized += usize::from(!runtime.synchronized());
                    }
                }
                runtime.cycle(t, &mut world, &mut scratch);
                if waiting == Some(true) && runtime.synchronized() {
                    waiting = Some(false);
                    latest = latest.max(Some(t));
                }
            }
            if watch.is_some() {
                match waiting {
                    None if !runtime.synchronized() => {
                        unsynchronized += 1;
                        all = false;
                    }
                    Some(true) => all = false,
                    _ => {}
                }
            }
        }
        Recovery {
            unsynchronized_at_return: unsynchronized,
            all_synchronized_at: if all { latest } else { None },
        }
    }

    pub fn fast_forward(&mut self, to: u64) {
        for runtime in &mut self.runtimes {
            runtime.fast_forward(to, &self.settings);
        }
    }
}

/// Where the scenarios start: long enough after the simulation's epoch for
/// certificates issued before them.
pub const START: u64 = 100 * DAY;

/// A fleet of `n` runtimes of this agent in their steady state at `START`:
/// cycles at uniformly spread moments of the sync period, the Connector
/// asked at one of the cycles of an interval, certificates of every age up
/// to the earliest renewal.
pub fn steady_agents(n: usize, settings: &Settings, seed: u64) -> Fleet<Agent> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let period = settings.sync_period.as_millis() as u64;
    let cycles_an_interval = (settings.connector_check_interval.as_millis() as u64 / period).max(1);
    // The earliest renewal comes at 0.7 - 0.03 of the validity.
    let renewal_age = (settings.certificate_validity.as_millis() as f64
        * (1.0 - settings.renewal_threshold * 1.1)) as u64;
    let runtimes = (0..n)
        .map(|_| {
            let identity: u128 = rng.random();
            let at = START + rng.random_range(0..period);
            let ago = rng.random_range(1..=cycles_an_interval);
            let age = rng.random_range(0..renewal_age);
            Agent::steady(identity, at, ago, at - age, settings)
        })
        .collect();
    Fleet {
        runtimes,
        settings: settings.clone(),
        seed,
    }
}

/// The Go agent's fleet in its steady state at `START`.
pub fn steady_go(n: usize, settings: &Settings, seed: u64) -> Fleet<GoAgent> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let renewal_age = (settings.certificate_validity.as_millis() as f64
        * (1.0 - settings.renewal_threshold)) as u64;
    let runtimes = (0..n)
        .map(|_| {
            let period = GoAgent::resync_period(settings, &mut rng);
            let at = START + rng.random_range(0..period);
            let age = rng.random_range(0..renewal_age - MINUTE);
            GoAgent::steady(at, period, at - age, settings)
        })
        .collect();
    Fleet {
        runtimes,
        settings: settings.clone(),
        seed,
    }
}

/// `n` runtimes of this agent connected in the same minute from `START`.
pub fn provisioned_agents(n: usize, settings: &Settings, seed: u64) -> Fleet<Agent> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let runtimes = (0..n)
        .map(|_| Agent::new_to_connect(rng.random(), START + rng.random_range(0..MINUTE)))
        .collect();
    Fleet {
        runtimes,
        settings: settings.clone(),
        seed,
    }
}

/// `n` Go agents started (and connected) in the same minute from `START`.
pub fn provisioned_go(n: usize, settings: &Settings, seed: u64) -> Fleet<GoAgent> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let runtimes = (0..n)
        .map(|_| {
            let period = GoAgent::resync_period(settings, &mut rng);
            GoAgent::new_to_connect(START + rng.random_range(0..MINUTE), period)
        })
        .collect();
    Fleet {
        runtimes,
        settings: settings.clone(),
        seed,
    }
}
