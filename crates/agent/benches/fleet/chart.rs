//! The chart: Compass requests per second of the largest fleet, this agent
//! (left) beside the Go agent (right), one row per scenario, the Director's
//! requests (blue) under the Connector's (orange), the steady rate dashed.
//! plotters draws into a pixel buffer (its bitmap backend, no font: any
//! text it drew itself would panic); the text is font8x8's glyphs, set
//! pixel by pixel; png writes the file.

use std::path::Path;

use plotters::prelude::*;

use crate::model::Settings;
use crate::model::{DAY, HOUR, MINUTE};
use crate::report::{Figures, Minutes};
use crate::sim::START;
use crate::{Policy, Run, Scenario, OUTAGE, RENEWAL_DAYS, SLOW};

const WIDTH: u32 = 1600;
const HEIGHT: u32 = 1900;
const TITLE: u32 = 70;
const DIRECTOR: RGBColor = RGBColor(52, 101, 164);
const CONNECTOR: RGBColor = RGBColor(245, 121, 0);
const GRID: RGBColor = RGBColor(225, 225, 225);
const INK: RGBColor = RGBColor(30, 30, 30);
const GOAL: RGBColor = RGBColor(204, 0, 0);

/// A row of the chart: which run, which stretch, how the time axis reads.
struct Row {
    scenario: Scenario,
    segment: usize,
    from: u64,
    to: u64,
    title: String,
    /// Minutes between ticks, and how a tick reads.
    tick: u64,
    label: fn(u64) -> String,
    /// Draw the goal line (1.5 × steady).
    goal: bool,
    /// Clip the y axis at the busiest minute after this time (the
    /// provisioning minute would flatten the rest).
    clip_from: Option<u64>,
}

fn clock(t: u64) -> String {
    let s = (t - START) / 1000 % 86_400;
    format!("{:02}:{:02}", s / 3600, s % 3600 / 60)
}

fn day(t: u64) -> String {
    format!("day {}", (t - START) / DAY)
}

/// Text into the RGB buffer: font8x8's glyphs, `scale` pixels a dot.
fn text(buffer: &mut [u8], x: i32, y: i32, s: &str, scale: i32, color: RGBColor) {
    let mut cx = x;
    for c in s.chars() {
        let c = match c {
            '×' => 'x',
            '÷' => '/',
            c if c.is_ascii() => c,
            _ => '?',
        };
        let glyph = font8x8::legacy::BASIC_LEGACY[c as usize];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = cx + col * scale + dx;
                        let py = y + row as i32 * scale + dy;
                        if px < 0 || py < 0 || px >= WIDTH as i32 || py >= HEIGHT as i32 {
                            continue;
                        }
                        let i = (py as usize * WIDTH as usize + px as usize) * 3;
                        buffer[i] = color.0;
                        buffer[i + 1] = color.1;
                        buffer[i + 2] = color.2;
                    }
                }
            }
        }
        cx += 8 * scale;
    }
}

fn text_width(s: &str, scale: i32) -> i32 {
    s.chars().count() as i32 * 8 * scale
}

/// A round step for about `ticks` ticks up to `max`.
fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn number(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

struct Label {
    x: i32,
    y: i32,
    text: String,
    scale: i32,
    color: RGBColor,
}

pub fn draw(path: &Path, runs: &[Run], all: &[Figures], runtimes: usize, settings: &Settings) {
    let rows = [
        Row {
            scenario: Scenario::Steady,
            segment: 0,
            from: START,
            to: START + DAY,
            title: "a steady day, Kyma's settings".into(),
            tick: 180,
            label: clock,
            goal: false,
            clip_from: None,
        },
        Row {
            scenario: Scenario::Provisioned,
            segment: 0,
            from: START,
            to: START + 3 * HOUR,
            title: "provisioned in one minute: the first 3 hours (y clipped)".into(),
            tick: 30,
            label: clock,
            goal: false,
            clip_from: Some(START + 10 * MINUTE),
        },
        Row {
            scenario: Scenario::Provisioned,
            segment: 1,
            from: RENEWAL_DAYS.0,
            to: RENEWAL_DAYS.1,
            title: "provisioned in one minute: the renewals (2160h, serial 2)".into(),
            tick: 24 * 60,
            label: day,
            goal: false,
            clip_from: None,
        },
        Row {
            scenario: Scenario::Outage,
            segment: 0,
            from: OUTAGE.0 - 30 * MINUTE,
            to: OUTAGE.1 + 150 * MINUTE,
            title: "Compass down 02:00-02:30 (red: 1.5x steady, the goal)".into(),
            tick: 30,
            label: clock,
            goal: true,
            clip_from: None,
        },
        Row {
            scenario: Scenario::SlowDirector,
            segment: 0,
            from: SLOW.0 - 30 * MINUTE,
            to: SLOW.1 + 120 * MINUTE,
            title: "the Director answers in 2 s from 02:00 to 03:00".into(),
            tick: 30,
            label: clock,
            goal: false,
            clip_from: None,
        },
    ];
    let mut buffer = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    let mut labels: Vec<Label> = Vec::new();
    labels.push(Label {
        x: 20,
        y: 14,
        text: format!(
            "Compass requests/s (a minute's mean), {runtimes} runtimes: this agent (left), Go agent (right)"
        ),
        scale: 2,
        color: INK,
    });
    labels.push(Label {
        x: 20,
        y: 44,
        text: format!(
            "blue: Director, orange: Connector (stacked), dashed: each policy's steady mean. Sync period {} s, minimal {} s, timeout {} s.  cargo bench -p compass-runtime-agent --bench fleet",
            settings.sync_period.as_secs(),
            settings.minimal_sync_time.as_secs(),
            settings.request_timeout.as_secs()
        ),
        scale: 1,
        color: INK,
    });
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        let (_, body) = root.split_vertically(TITLE);
        let panels = body.split_evenly((rows.len(), 2));
        for (r, row) in rows.iter().enumerate() {
            let minutes = |policy: Policy| -> Option<Minutes> {
                runs.iter()
                    .find(|run| {
                        run.scenario == row.scenario
                            && run.policy == policy
                            && run.runtimes == runtimes
                    })
                    .map(|run| Minutes::of(&run.segments[row.segment]))
            };
            let (Some(ours), Some(go)) = (minutes(Policy::Ours), minutes(Policy::Go)) else {
                continue;
            };
            let steady = |policy: Policy| {
                all.iter()
                    .find(|f| f.policy == policy && f.runtimes == runtimes)
                    .map_or(0.0, |f| f.steady)
            };
            let in_range = |m: &Minutes, from: u64| -> f64 {
                (0..m.connector.len())
                    .filter(|&i| {
                        let t = m.start + i as u64 * MINUTE;
                        t >= from && t < row.to
                    })
                    .map(|i| f64::from(m.total(i)) / 60.0)
                    .fold(0.0, f64::max)
            };
            let top_from = row.clip_from.unwrap_or(row.from);
            let mut top = in_range(&ours, top_from)
                .max(in_range(&go, top_from))
                .max(steady(Policy::Go) * if row.goal { 1.5 } else { 1.0 })
                .max(1.0);
            top *= 1.12;
            let step = nice_step(top, 5.0);
            for (c, (policy, m)) in [(Policy::Ours, &ours), (Policy::Go, &go)]
                .into_iter()
                .enumerate()
            {
                let panel = &panels[r * 2 + c];
                let x0 = (row.from - START) as f64 / MINUTE as f64;
                let x1 = (row.to - START) as f64 / MINUTE as f64;
                let mut chart = ChartBuilder::on(panel)
                    .margin_left(70)
                    .margin_right(16)
                    .margin_top(28)
                    .margin_bottom(26)
                    .build_cartesian_2d(x0..x1, 0.0..top)
                    .expect("a chart");
                // Grid.
                let mut y = 0.0;
                while y <= top {
                    chart
                        .draw_series(LineSeries::new([(x0, y), (x1, y)], GRID))
                        .unwrap();
                    let (px, py) = chart.backend_coord(&(x0, y));
                    let s = number(y);
                    labels.push(Label {
                        x: px - 6 - text_width(&s, 1),
                        y: py - 4,
                        text: s,
                        scale: 1,
                        color: INK,
                    });
                    y += step;
                }
                let first_tick = (row.from - START) / MINUTE;
                let mut tick = first_tick.div_ceil(row.tick) * row.tick;
                while (tick as f64) <= x1 {
                    let x = tick as f64;
                    chart
                        .draw_series(LineSeries::new([(x, 0.0), (x, top)], GRID))
                        .unwrap();
                    let (px, py) = chart.backend_coord(&(x, 0.0));
                    let s = (row.label)(START + tick * MINUTE);
                    labels.push(Label {
                        x: px - text_width(&s, 1) / 2,
                        y: py + 8,
                        text: s,
                        scale: 1,
                        color: INK,
                    });
                    tick += row.tick;
                }
                // Stacked: the total (orange) behind the Director's part (blue).
                let points = |director_only: bool| -> Vec<(f64, f64)> {
                    (0..m.connector.len())
                        .filter_map(|i| {
                            let t = m.start + i as u64 * MINUTE;
                            if t < row.from || t >= row.to {
                                return None;
                            }
                            let count = if director_only {
                                m.director[i]
                            } else {
                                m.total(i)
                            };
                            let x = (t - START) as f64 / MINUTE as f64;
                            Some((x, (f64::from(count) / 60.0).min(top)))
                        })
                        .collect()
                };
                chart
                    .draw_series(
                        AreaSeries::new(points(false), 0.0, CONNECTOR.mix(0.9))
                            .border_style(CONNECTOR),
                    )
                    .unwrap();
                chart
                    .draw_series(
                        AreaSeries::new(points(true), 0.0, DIRECTOR.mix(0.9))
                            .border_style(DIRECTOR),
                    )
                    .unwrap();
                let level = steady(policy);
                chart
                    .draw_series(DashedLineSeries::new(
                        [(x0, level), (x1, level)],
                        8,
                        6,
                        INK.stroke_width(2),
                    ))
                    .unwrap();
                if row.goal {
                    chart
                        .draw_series(DashedLineSeries::new(
                            [(x0, 1.5 * level), (x1, 1.5 * level)],
                            8,
                            6,
                            GOAL.stroke_width(2),
                        ))
                        .unwrap();
                }
                // Frame.
                chart
                    .draw_series(LineSeries::new(
                        [(x0, 0.0), (x1, 0.0), (x1, top), (x0, top), (x0, 0.0)],
                        INK,
                    ))
                    .unwrap();
                let (px, py) = chart.backend_coord(&(x0, top));
                let figures = all.iter().find(|f| {
                    f.scenario == row.scenario && f.policy == policy && f.runtimes == runtimes
                });
                let summary = figures.map_or(String::new(), |f| match (row.scenario, row.segment) {
                    (Scenario::Provisioned, 0) => {
                        let (first, after) = f.provisioning.unwrap();
                        format!("  [busiest minute {first:.0}/s; after the first hour {:.2}x steady]", after / f.steady)
                    }
                    (Scenario::Provisioned, _) => format!(
                        "  [peak {:.2}x steady; renewals' busiest hour {:.1}x their mean]",
                        f.ratio(),
                        f.renewal_ratio().unwrap_or(0.0)
                    ),
                    (Scenario::Outage, _) => format!(
                        "  [peak after the return {:.2}x steady; all Synchronized after {}]",
                        f.ratio(),
                        f.recovery
                            .and_then(|(_, s)| s)
                            .map_or("never".into(), |s| format!("{s:.0} s"))
                    ),
                    _ => format!("  [peak {:.2}x steady]", f.ratio()),
                });
                let who = match policy {
                    Policy::Ours => "this agent",
                    Policy::Go => "Go agent",
                };
                labels.push(Label {
                    x: px,
                    y: py - 22,
                    text: format!("{who}: {}", row.title),
                    scale: 1,
                    color: INK,
                });
                labels.push(Label {
                    x: px,
                    y: py - 11,
                    text: format!("requests/s{summary}"),
                    scale: 1,
                    color: if policy == Policy::Ours {
                        DIRECTOR
                    } else {
                        INK
                    },
                });
            }
        }
        root.present().expect("the chart drawn");
    }
    for label in &labels {
        text(
            &mut buffer,
            label.x,
            label.y,
            &label.text,
            label.scale,
            label.color,
        );
    }
    let file = std::fs::File::create(path).expect("the chart file");
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header().expect("a PNG header");
    writer.write_image_data(&buffer).expect("the PNG");
}
