//! The sync plan alone, without I/O: how its time grows with the number of
//! applications. Prints; never fails on a time.
//!
//!     cargo bench -p compass-runtime-agent --bench plan
//!     BENCH_PLAN_SIZES=1000,3000,10000,30000 cargo bench -p compass-runtime-agent --bench plan
//!
//! Each application as the sync bench's Director serves it (2 bundles × 3
//! APIs, 2 events, Basic or OAuth credentials and headers per bundle: four
//! Secrets), the cluster as the agent would have written it. Three cases:
//! the first sync (empty cluster), an idle sync (all unchanged) and every
//! application gone from the Director (all deleted). A plan that is linear
//! (or n log n) takes about the same time per application at every size.

use std::hint::black_box;
use std::time::{Duration, Instant};

use compass_runtime_agent::sync::{self, ActualState, Deletions, HeldApplication};

#[path = "shared/sync_fixtures.rs"]
mod fixtures;
use fixtures::{wanted, written};

/// The fastest of five plans of `held` against `actual`, and its writes.
fn time_plan(held: &[HeldApplication], actual: &ActualState) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut writes = 0;
    for _ in 0..5 {
        let input = held.to_vec();
        let started = Instant::now();
        let plan = sync::plan(input, actual, Deletions::Allowed);
        best = best.min(started.elapsed());
        writes = plan.writes();
        black_box(plan);
    }
    (best, writes)
}

fn main() {
    let sizes = fixtures::sizes("BENCH_PLAN_SIZES", &[1_000, 3_000, 10_000]);
    println!("compass-runtime-agent plan benchmark (no I/O; fastest of 5 plans)");
    println!("each application: 2 bundles × 3 APIs, 4 Secrets");
    println!(
        "| applications | first sync: time, per app, writes | idle: time, per app, writes | all gone: time, per app, writes |"
    );
    println!("|---|---|---|---|");
    for count in sizes {
        let wanted = wanted(count);
        let held: Vec<HeldApplication> =
            wanted.iter().cloned().map(HeldApplication::from).collect();
        let actual = written(&wanted);
        let first = time_plan(&held, &ActualState::default());
        let idle = time_plan(&held, &actual);
        let gone = time_plan(&[], &actual);
        assert_eq!(first.1, count * 5, "the first sync writes each object");
        assert_eq!(idle.1, 0, "an idle plan writes nothing");
        assert_eq!(gone.1, count * 5, "all gone: each object deleted");
        let cell = |(time, writes): (Duration, usize)| {
            format!(
                "{:.1} ms, {:.2} µs, {writes}",
                time.as_secs_f64() * 1e3,
                time.as_secs_f64() * 1e6 / count as f64
            )
        };
        println!(
            "| {count} | {} | {} | {} |",
            cell(first),
            cell(idle),
            cell(gone)
        );
    }
}
