//! `coaug plot RUN_DIR`: PNG curves of a training run — mean rewards by role over steps
//! (`reward.png`) and validation nDCG@10 over steps (`validation_ndcg.png`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use coaug_rl::metrics::read_jsonl;
use coaug_rl::{StepMetrics, ValidationMetrics};
use plotters::prelude::*;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run directory written by `coaug train` (holding metrics.jsonl, validation.jsonl).
    pub run_dir: PathBuf,

    /// Where to write the PNGs (default: the run directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// TrueType font for the labels (default: DejaVu Sans or Liberation Sans from the system).
    #[arg(long, value_name = "FILE", env = "COAUG_FONT")]
    pub font: Option<PathBuf>,

    /// Steps averaged in the smoothed reward curve.
    #[arg(long, default_value_t = 10)]
    pub window: usize,
}

const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
];

pub fn run(args: Args) -> Result<()> {
    let steps: Vec<StepMetrics> = read_jsonl(&args.run_dir.join("metrics.jsonl"))?;
    let validations: Vec<ValidationMetrics> = read_jsonl(&args.run_dir.join("validation.jsonl"))?;
    if steps.is_empty() {
        bail!("{}: no metrics.jsonl records to plot", args.run_dir.display());
    }
    register_font(args.font.as_deref())?;
    let out = args.out.clone().unwrap_or_else(|| args.run_dir.clone());
    std::fs::create_dir_all(&out)?;
    let reward = out.join("reward.png");
    plot_rewards(&steps, args.window.max(1), &reward)?;
    eprintln!("wrote {}", reward.display());
    if !validations.is_empty() {
        let val = out.join("validation_ndcg.png");
        plot_validation(&validations, &val)?;
        eprintln!("wrote {}", val.display());
    }
    Ok(())
}

fn register_font(flag: Option<&Path>) -> Result<()> {
    let path = match flag {
        Some(p) => p.to_path_buf(),
        None => FONT_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| anyhow!("no system font found; pass --font FILE.ttf"))?,
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading font {}", path.display()))?;
    // plotters keeps registered fonts for the whole process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{} is not a usable TrueType font", path.display()))
}

fn moving_average(values: &[f64], window: usize) -> Vec<f64> {
    (0..values.len())
        .map(|i| {
            let from = (i + 1).saturating_sub(window);
            values[from..=i].iter().sum::<f64>() / (i + 1 - from) as f64
        })
        .collect()
}

fn plot_rewards(steps: &[StepMetrics], window: usize, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let x_max = steps.last().map_or(1, |m| m.step + 1) as f64;
    let series: [(&str, Vec<f64>, RGBColor); 4] = [
        ("query", steps.iter().map(|m| m.reward_query).collect(), RGBColor(31, 119, 180)),
        ("positive document", steps.iter().map(|m| m.reward_positive_document).collect(), RGBColor(44, 160, 44)),
        ("negative document", steps.iter().map(|m| m.reward_negative_document).collect(), RGBColor(214, 39, 40)),
        ("query vs original docs", steps.iter().map(|m| m.ndcg_query_rollouts).collect(), RGBColor(148, 103, 189)),
    ];
    let y_max = series.iter().flat_map(|s| s.1.iter().copied()).fold(0.0f64, f64::max).max(0.05) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("Mean reward (expected nDCG@10) per step", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(plot_err)?;
    chart.configure_mesh().x_desc("step").y_desc("reward").draw().map_err(plot_err)?;
    for (name, values, color) in &series {
        let smoothed = moving_average(values, window);
        let points = steps.iter().zip(values).map(|(m, &v)| (m.step as f64, v));
        chart.draw_series(LineSeries::new(points, color.mix(0.25))).map_err(plot_err)?;
        let color = *color;
        chart
            .draw_series(LineSeries::new(steps.iter().zip(smoothed).map(|(m, v)| (m.step as f64, v)), color.stroke_width(2)))
            .map_err(plot_err)?
            .label(format!("{name} ({window}-step mean)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

fn plot_validation(validations: &[ValidationMetrics], path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let x_max = validations.iter().map(|v| v.step).max().unwrap_or(0).max(1) as f64;
    let lo = validations.iter().map(|v| v.ndcg_at_10).fold(f64::INFINITY, f64::min);
    let hi = validations.iter().map(|v| v.ndcg_at_10).fold(0.0f64, f64::max);
    let pad = ((hi - lo) * 0.2).max(0.01);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Validation nDCG@10 ({} held-out queries)", validations[0].queries), ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max * 1.02, (lo - pad).max(0.0)..hi + pad)
        .map_err(plot_err)?;
    chart.configure_mesh().x_desc("step").y_desc("nDCG@10").draw().map_err(plot_err)?;
    let blue = RGBColor(31, 119, 180);
    let points: Vec<(f64, f64)> = validations.iter().map(|v| (v.step as f64, v.ndcg_at_10)).collect();
    chart.draw_series(LineSeries::new(points.clone(), blue.stroke_width(2))).map_err(plot_err)?;
    chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, blue.filled()))).map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}
