//! The figures of each run, the goals, and what is written.
//!
//! Rates are requests per second averaged over a minute (a minute's count
//! ÷ 60), minutes aligned to the start of the day. "Steady" is the mean rate
//! of the same policy and fleet over the steady day.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use crate::model::{Settings, Traffic, HOUR, MINUTE, SECOND};
use crate::sim::START;
use crate::{Policy, Run, Scenario, OUTAGE, PROVISIONING, RENEWAL_DAYS, SLOW};

/// Requests per minute of a stretch, from its first second.
#[derive(Clone, Debug)]
pub struct Minutes {
    /// In milliseconds.
    pub start: u64,
    pub connector: Vec<u32>,
    pub director: Vec<u32>,
    pub renewals: Vec<u32>,
}

impl Minutes {
    pub fn of(traffic: &Traffic) -> Minutes {
        let per_minute = |seconds: &[u32]| -> Vec<u32> {
            seconds.chunks(60).map(|chunk| chunk.iter().sum()).collect()
        };
        Minutes {
            start: traffic.start,
            connector: per_minute(&traffic.connector),
            director: per_minute(&traffic.director),
            renewals: per_minute(&traffic.renewals),
        }
    }

    pub fn total(&self, i: usize) -> u32 {
        self.connector[i] + self.director[i]
    }

    /// The minutes of `[from, to)`.
    fn range(&self, from: u64, to: u64) -> std::ops::Range<usize> {
        let index = |t: u64| ((t.max(self.start) - self.start) / MINUTE) as usize;
        index(from).min(self.connector.len())..index(to).min(self.connector.len())
    }

    /// The busiest minute of `[from, to)`: its index.
    fn peak(&self, from: u64, to: u64) -> usize {
        self.range(from, to)
            .max_by_key(|&i| (self.total(i), std::cmp::Reverse(i)))
            .expect("a minute")
    }

    fn mean(&self, from: u64, to: u64) -> (f64, f64) {
        let range = self.range(from, to);
        let minutes = range.len() as f64;
        let connector: u64 = self.connector[range.clone()]
            .iter()
            .map(|&c| c as u64)
            .sum();
        let director: u64 = self.director[range].iter().map(|&c| c as u64).sum();
        (
            connector as f64 / minutes / 60.0,
            director as f64 / minutes / 60.0,
        )
    }
}

/// The figures of one run.
#[derive(Clone, Debug)]
pub struct Figures {
    pub scenario: Scenario,
    pub policy: Policy,
    pub runtimes: usize,
    /// The steady day's mean, requests/s.
    pub steady: f64,
    /// Mean of the scenario's stretch: Connector, Director.
    pub mean: (f64, f64),
    /// The busiest minute of the window that matters: Connector, Director.
    pub peak: (f64, f64),
    /// When it began, seconds from the start of its day.
    pub peak_at: u64,
    /// Outage: runtimes not synchronized at Compass's return, and the time
    /// from the return until every one was again.
    pub recovery: Option<(usize, Option<f64>)>,
    /// Provisioned: renewals, the busiest hour's, the mean hour's over the
    /// renewal window of this agent's policy.
    pub renewals: Option<(u64, u32, f64)>,
    /// Provisioned: the busiest minute of the provisioning day, and the
    /// busiest after its first hour (requests/s).
    pub provisioning: Option<(f64, f64)>,
    /// Outage: the busiest minute from the return to the end of the day,
    /// ÷ steady, and when.
    pub rest_of_day: Option<(f64, u64)>,
}

impl Figures {
    pub fn peak_total(&self) -> f64 {
        self.peak.0 + self.peak.1
    }
    pub fn mean_total(&self) -> f64 {
        self.mean.0 + self.mean.1
    }
    pub fn ratio(&self) -> f64 {
        self.peak_total() / self.steady
    }
    pub fn renewal_ratio(&self) -> Option<f64> {
        self.renewals.map(|(_, peak, mean)| f64::from(peak) / mean)
    }
}

/// The hours over which this agent spreads the renewals of certificates
/// issued in the same minute: 10% of the renewal window (0.1 × 0.3 × 2160h
/// = 64.8 h) before 0.7 of the validity.
pub fn renewal_window_hours(settings: &Settings) -> f64 {
    settings.certificate_validity.as_secs_f64() * settings.renewal_threshold * 0.1 / 3600.0
}

fn figures(run: &Run, steady: f64, settings: &Settings) -> Figures {
    let minutes: Vec<Minutes> = run.segments.iter().map(Minutes::of).collect();
    let day_start = START;
    let (segment, from, to) = match run.scenario {
        Scenario::Steady => (0, START, START + 24 * HOUR),
        Scenario::Outage => (0, OUTAGE.1, OUTAGE.1 + HOUR),
        Scenario::SlowDirector => (0, SLOW.0, SLOW.1 + HOUR),
        Scenario::Provisioned => (1, RENEWAL_DAYS.0, RENEWAL_DAYS.1),
    };
    let m = &minutes[segment];
    let end = m.start + m.connector.len() as u64 * MINUTE;
    let peak = m.peak(from, to);
    let peak_at = (m.start + peak as u64 * MINUTE - day_start) / SECOND;
    let rest_of_day = (run.scenario == Scenario::Outage).then(|| {
        let i = m.peak(OUTAGE.1, START + 24 * HOUR);
        (
            f64::from(m.total(i)) / 60.0 / steady,
            (m.start + i as u64 * MINUTE - day_start) / SECOND,
        )
    });
    let recovery = (run.scenario == Scenario::Outage).then(|| {
        (
            run.recovery.unsynchronized_at_return,
            run.recovery
                .all_synchronized_at
                .map(|t| (t - OUTAGE.1) as f64 / SECOND as f64),
        )
    });
    let renewals = (run.scenario == Scenario::Provisioned).then(|| {
        let hours: Vec<u32> = m.renewals.chunks(60).map(|c| c.iter().sum()).collect();
        let total: u64 = hours.iter().map(|&h| u64::from(h)).sum();
        let peak = hours.iter().copied().max().unwrap_or(0);
        (total, peak, total as f64 / renewal_window_hours(settings))
    });
    let provisioning = (run.scenario == Scenario::Provisioned).then(|| {
        let day = &minutes[0];
        let first = day.peak(START, START + HOUR);
        let after = day.peak(START + HOUR, PROVISIONING.1);
        (
            f64::from(day.total(first)) / 60.0,
            f64::from(day.total(after)) / 60.0,
        )
    });
    Figures {
        scenario: run.scenario,
        policy: run.policy,
        runtimes: run.runtimes,
        steady,
        mean: m.mean(m.start, end),
        peak: (
            f64::from(m.connector[peak]) / 60.0,
            f64::from(m.director[peak]) / 60.0,
        ),
        peak_at,
        recovery,
        renewals,
        provisioning,
        rest_of_day,
    }
}

fn hms(seconds: u64) -> String {
    let day = seconds / 86_400;
    let rest = seconds % 86_400;
    let clock = format!("{:02}:{:02}", rest / 3600, rest % 3600 / 60);
    if day == 0 {
        clock
    } else {
        format!("day {day} {clock}")
    }
}

/// A goal of issue 31, as checked.
pub struct Goal {
    pub policy: Policy,
    pub runtimes: usize,
    pub text: String,
    pub met: bool,
}

pub fn goals(all: &[Figures], settings: &Settings) -> Vec<Goal> {
    let mut goals = Vec::new();
    let two_periods = 2.0 * settings.sync_period.as_secs_f64();
    for f in all {
        match f.scenario {
            Scenario::Outage => {
                let (left, recovered) = f.recovery.expect("outage figures");
                let within = recovered.is_some_and(|s| s <= two_periods);
                let flat = f.ratio() <= 1.5;
                goals.push(Goal {
                    policy: f.policy,
                    runtimes: f.runtimes,
                    met: within && flat,
                    text: format!(
                        "after the 30-minute outage: peak {:.2}× steady (goal ≤ 1.5×), all {left} runtimes Synchronized {} after the return (goal ≤ {two_periods:.0} s)",
                        f.ratio(),
                        recovered.map_or("never".to_string(), |s| format!("{s:.0} s")),
                    ),
                });
            }
            Scenario::Provisioned => {
                let (total, peak, mean) = f.renewals.expect("renewal figures");
                let ratio = f64::from(peak) / mean;
                goals.push(Goal {
                    policy: f.policy,
                    runtimes: f.runtimes,
                    met: ratio <= 1.5,
                    text: format!(
                        "renewals of a fleet issued in one minute: {total} renewals, busiest hour {peak} = {ratio:.2}× their mean over the {:.1} h window (goal ≤ 1.5×)",
                        renewal_window_hours(settings)
                    ),
                });
            }
            _ => {}
        }
    }
    goals
}

fn output_dirs() -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let csv = std::env::var_os("FLEET_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/fleet"));
    let chart = std::env::var_os("FLEET_CHART")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("docs/fleet"));
    (csv, chart)
}

pub fn print_and_write(runs: &[Run], settings: &Settings, workers: usize, simulated: f64) {
    let steady: BTreeMap<(Policy, usize), f64> = runs
        .iter()
        .filter(|r| r.scenario == Scenario::Steady)
        .map(|r| {
            let m = Minutes::of(&r.segments[0]);
            let (c, d) = m.mean(m.start, m.start + m.connector.len() as u64 * MINUTE);
            ((r.policy, r.runtimes), c + d)
        })
        .collect();
    let all: Vec<Figures> = runs
        .iter()
        .map(|r| figures(r, steady[&(r.policy, r.runtimes)], settings))
        .collect();

    let mut text = String::new();
    let _ = writeln!(
        text,
        "\nFleet simulation: {} on {} worker thread(s), {simulated:.0} s in all. Requests/s are a minute's count ÷ 60; C = Connector, D = Director.",
        machine(),
        workers
    );
    let _ = writeln!(
        text,
        "Settings: sync period {} s, minimal sync time {} s, Connector check {} s, max retry delay {} s, request timeout {} s, certificates valid {} h renewed at {} of it, serial 2.",
        settings.sync_period.as_secs(),
        settings.minimal_sync_time.as_secs(),
        settings.connector_check_interval.as_secs(),
        settings.max_retry_delay.as_secs(),
        settings.request_timeout.as_secs(),
        settings.certificate_validity.as_secs() / 3600,
        settings.renewal_threshold
    );
    let _ = writeln!(
        text,
        "Windows of the peak: steady: the day; outage (Compass down 02:00-02:30): the hour after 02:30; slow Director (2 s, 02:00-03:00): 02:00-04:00; provisioned: days 60.25-63.25 after the minute of issue (every renewal of both policies)."
    );
    let mut sizes: Vec<usize> = all.iter().map(|f| f.runtimes).collect();
    sizes.dedup();
    for &n in &sizes {
        let _ = writeln!(text, "\n{n} runtimes");
        let _ = writeln!(
            text,
            "{:<13} {:<6} {:>9} {:>19} {:>19} {:>12} {:>8}  more",
            "scenario", "policy", "steady/s", "mean/s (C + D)", "peak/s (C + D)", "at", "peak÷st",
        );
        for f in all.iter().filter(|f| f.runtimes == n) {
            let more = match f.scenario {
                Scenario::Outage => {
                    let (left, recovered) = f.recovery.unwrap();
                    let (rest, at) = f.rest_of_day.unwrap();
                    format!(
                        "{left} not Synchronized at the return; all again after {}; busiest minute from the return to midnight {rest:.2}× steady at {}",
                        recovered.map_or("never".into(), |s| format!("{s:.0} s")),
                        hms(at)
                    )
                }
                Scenario::Provisioned => {
                    let (total, peak, mean) = f.renewals.unwrap();
                    let (first, after) = f.provisioning.unwrap();
                    format!(
                        "{total} renewals, busiest hour {peak} = {:.2}× the mean hour ({mean:.1}); provisioning day: busiest minute {first:.0}/s, after its first hour {after:.1}/s = {:.2}× steady",
                        f64::from(peak) / mean,
                        after / f.steady
                    )
                }
                _ => String::new(),
            };
            let _ = writeln!(
                text,
                "{:<13} {:<6} {:>9.2} {:>19} {:>19} {:>12} {:>7.2}×  {more}",
                f.scenario.name(),
                f.policy.name(),
                f.steady,
                format!("{:.2} ({:.2} + {:.2})", f.mean_total(), f.mean.0, f.mean.1),
                format!("{:.2} ({:.2} + {:.2})", f.peak_total(), f.peak.0, f.peak.1),
                hms(f.peak_at),
                f.ratio(),
            );
        }
    }
    let goals = goals(&all, settings);
    let _ = writeln!(text, "\nGoals (issue 31)");
    for goal in &goals {
        let _ = writeln!(
            text,
            "  {:<4} {:>7}: {} {}",
            goal.policy.name(),
            goal.runtimes,
            if goal.met { "MET    " } else { "NOT MET" },
            goal.text
        );
    }
    print!("{text}");

    let (csv_dir, chart_dir) = output_dirs();
    std::fs::create_dir_all(&csv_dir).expect("the CSV directory");
    std::fs::create_dir_all(&chart_dir).expect("the chart directory");
    let csv_path = csv_dir.join("fleet.csv");
    write_series(&csv_path, runs);
    let figures_path = chart_dir.join("figures.csv");
    write_figures(&figures_path, &all);
    let largest = *sizes.last().expect("a size");
    let chart_path = chart_dir.join("fleet.png");
    crate::chart::draw(&chart_path, runs, &all, largest, settings);
    println!(
        "\nwrote {} (requests per minute of every run), {} (the table) and {} ({largest} runtimes)",
        csv_path.display(),
        figures_path.display(),
        chart_path.display()
    );
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cpu}, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )
}

fn write_series(path: &std::path::Path, runs: &[Run]) {
    let file = std::fs::File::create(path).expect("the CSV");
    let mut out = std::io::BufWriter::new(file);
    writeln!(
        out,
        "scenario,policy,runtimes,minute_start_s,connector_per_s,director_per_s,renewals_per_s"
    )
    .unwrap();
    for run in runs {
        for segment in &run.segments {
            let m = Minutes::of(segment);
            for i in 0..m.connector.len() {
                let at = (m.start - START) / SECOND + i as u64 * 60;
                writeln!(
                    out,
                    "{},{},{},{at},{:.4},{:.4},{:.4}",
                    run.scenario.name(),
                    run.policy.name(),
                    run.runtimes,
                    f64::from(m.connector[i]) / 60.0,
                    f64::from(m.director[i]) / 60.0,
                    f64::from(m.renewals[i]) / 60.0,
                )
                .unwrap();
            }
        }
    }
}

fn write_figures(path: &std::path::Path, all: &[Figures]) {
    let mut out = String::from(
        "scenario,policy,runtimes,steady_per_s,mean_per_s,mean_connector_per_s,mean_director_per_s,peak_per_s,peak_connector_per_s,peak_director_per_s,peak_at_s,peak_over_steady,unsynchronized_at_return,all_synchronized_after_s,renewals,renewals_busiest_hour,renewals_mean_hour,renewals_peak_over_mean\n",
    );
    for f in all {
        let (left, recovered) = f.recovery.unwrap_or((0, None));
        let (renewals, peak_hour, mean_hour) = f.renewals.unwrap_or((0, 0, 0.0));
        let _ = writeln!(
            out,
            "{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{:.3},{},{},{},{},{:.2},{}",
            f.scenario.name(),
            f.policy.name(),
            f.runtimes,
            f.steady,
            f.mean_total(),
            f.mean.0,
            f.mean.1,
            f.peak_total(),
            f.peak.0,
            f.peak.1,
            f.peak_at,
            f.ratio(),
            if f.recovery.is_some() {
                left.to_string()
            } else {
                String::new()
            },
            recovered.map_or(String::new(), |s| format!("{s:.0}")),
            if f.renewals.is_some() {
                renewals.to_string()
            } else {
                String::new()
            },
            if f.renewals.is_some() {
                peak_hour.to_string()
            } else {
                String::new()
            },
            mean_hour,
            f.renewal_ratio()
                .map_or(String::new(), |r| format!("{r:.2}")),
        );
    }
    std::fs::write(path, out).expect("the figures CSV");
}
