//! The lab's plot: one panel per latency model, median detection time against false
//! suspicions per hour, one curve per detector kind, each point labelled with its setting.
//!
//! Text comes from a subset of DejaVu Sans compiled into the binary (crates/shoal/assets, with
//! its license), registered with plotters' ab_glyph backend, so that drawing needs no system
//! font at build or at run time.

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::{LatencyKind, Outcome};

/// DejaVu Sans, printable ASCII and a few symbols (see assets/DejaVuSans-subset.LICENSE).
static FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans-subset.ttf");

/// The curves' colors, in the order the curves first appear.
const COLORS: [RGBColor; 5] = [BLUE, RED, RGBColor(0, 140, 0), MAGENTA, RGBColor(200, 120, 0)];
const WIDTH: u32 = 1500;
const HEIGHT: u32 = 560;

/// Writes the PNG to `path`. Zero false suspicions cannot sit on a log scale: they are drawn
/// at half of one suspicion in the whole virtual run, and the axis says so.
pub fn draw(
    path: &Path,
    outcomes: &[Outcome],
    virtual_hours: f64,
    chosen: Option<&Outcome>,
) -> anyhow::Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the embedded font is not a font"))?;
    let mut pixels = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    draw_into(&mut pixels, outcomes, virtual_hours, chosen)?;
    let file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut encoder = png::Encoder::new(file, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(())
}

/// Draws the panels into `pixels` (RGB, WIDTH × HEIGHT).
fn draw_into(
    pixels: &mut [u8],
    outcomes: &[Outcome],
    virtual_hours: f64,
    chosen: Option<&Outcome>,
) -> anyhow::Result<()> {
    let floor = 0.5 / virtual_hours;
    let root = BitMapBackend::with_buffer(pixels, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(50);
    title.titled(
        &format!(
            "Failure detectors, heartbeats every 1 s: {virtual_hours} virtual hours per model \
             (0 false suspicions drawn at {floor:.0e}/h)"
        ),
        ("sans-serif", 22),
    )?;
    let x_max = outcomes.iter().map(|outcome| outcome.false_suspicions_per_hour).fold(floor, f64::max) * 3.0;
    let y_min = outcomes.iter().map(seconds).fold(f64::INFINITY, f64::min).max(0.01) / 1.5;
    let y_max = outcomes.iter().map(seconds).fold(0.1, f64::max) * 1.5;
    for (panel, kind) in body.split_evenly((1, LatencyKind::ALL.len())).iter().zip(LatencyKind::ALL) {
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{} latency", kind.name()), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((floor / 2.0..x_max).log_scale(), (y_min..y_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("false suspicions per hour")
            .y_desc("median detection time (s)")
            .x_label_formatter(&|value| format!("{value:.0e}"))
            .y_label_formatter(&|value| format!("{value}"))
            .draw()?;
        let mut curves: Vec<&str> = Vec::new();
        for outcome in outcomes {
            if !curves.contains(&outcome.setting.curve.as_str()) {
                curves.push(&outcome.setting.curve);
            }
        }
        for (curve, color) in curves.into_iter().zip(COLORS.iter().cycle().copied()) {
            let points: Vec<(f64, f64, String, bool)> = outcomes
                .iter()
                .filter(|outcome| outcome.latency == kind && outcome.setting.curve == curve)
                .map(|outcome| {
                    let is_chosen = chosen.is_some_and(|chosen| chosen.setting == outcome.setting);
                    (
                        outcome.false_suspicions_per_hour.max(floor),
                        seconds(outcome),
                        outcome.setting.label.clone(),
                        is_chosen,
                    )
                })
                .collect();
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(x, y, _, _)| (*x, *y)),
                    color.stroke_width(2),
                ))?
                .label(curve)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(points.iter().map(|(x, y, label, is_chosen)| {
                let size = if *is_chosen { 7 } else { 3 };
                let label = if *is_chosen { format!("{label} (chosen)") } else { label.clone() };
                EmptyElement::at((*x, *y))
                    + Circle::new((0, 0), size, color.filled())
                    + Text::new(label, (6, -14), ("sans-serif", 14).into_font())
            }))?;
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    }
    root.present()?;
    Ok(())
}

fn seconds(outcome: &Outcome) -> f64 {
    outcome.detection_median.as_secs_f64()
}
