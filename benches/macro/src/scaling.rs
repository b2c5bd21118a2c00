//! How produce throughput grows with partitions and with producers: runs `strom bench produce`
//! against the release `strom` broker and against librdkafka's in-process mock cluster (the
//! same load generator, the same run), for 1, 8, 64 and 1,000 partitions (one producer) and
//! for 1, 4 and 16 producers (8 partitions), repeats every point, and prints the medians as a
//! Markdown table, writes them as JSON and plots them to a PNG.
//!
//!   scripts/bench-scaling                  # builds the release binaries, writes docs/scaling.png
//!   target/release/strom-scaling --help
//!
//! Every run writes to a topic of its own, deleted afterwards so that the page cache does not
//! fill with dirty data over the sweep; the repetitions are the outer loop, so a change of the
//! machine's load during the sweep spreads over every point instead of skewing some.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;
use plotters::prelude::*;
use rdkafka::mocking::MockCluster;
use serde_json::{Value, json};
use strom_macro_bench::{Broker, cpu_seconds, create_topic, strom_bin};

#[derive(Parser, Debug)]
#[command(
    about = "produce throughput by partitions and by producers, strom vs librdkafka's mock cluster"
)]
struct Args {
    /// Records per run
    #[arg(long, default_value_t = 3_000_000)]
    records: u64,
    /// Bytes of each record's value
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Runs per point; the figure and the table show the median
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// acks of the producers (-1, 1 or 0)
    #[arg(long, default_value = "1", allow_hyphen_values = true)]
    acks: String,
    /// Partition counts of the first sweep
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,1000")]
    partitions: Vec<i32>,
    /// Producers during the partition sweep
    #[arg(long, default_value_t = 1)]
    partition_sweep_producers: usize,
    /// Producer counts of the second sweep
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    producers: Vec<usize>,
    /// Partitions during the producer sweep
    #[arg(long, default_value_t = 8)]
    producer_sweep_partitions: i32,
    /// Further options for `strom bench produce`, e.g. "--batch-size 16384 --linger-ms 1"
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    bench_args: String,
    /// The strom binary (default: `strom` next to this program, i.e. target/release/strom)
    #[arg(long)]
    strom_bin: Option<PathBuf>,
    /// Only run against strom
    #[arg(long)]
    skip_mock: bool,
    /// Where to write the figure
    #[arg(long, default_value = "scaling.png")]
    png: PathBuf,
    /// Where to write every run's figures as JSON (default: the PNG's path with .json)
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One point of a sweep.
#[derive(Clone, Copy, Debug)]
struct Point {
    partitions: i32,
    producers: usize,
}

/// What one `strom bench produce` run measured.
#[derive(Clone, Copy, Debug)]
struct Run {
    records_per_sec: f64,
    /// Broker CPU seconds per GiB of payload (strom only).
    cpu_per_gib: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Strom,
    Mock,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Strom => "strom",
            Target::Mock => "mock cluster",
        }
    }
}

fn bench_produce(bin: &Path, bootstrap: &str, topic: &str, point: Point, args: &Args) -> f64 {
    let mut cmd = Command::new(bin);
    cmd.args(["bench", "produce", "--topic", topic, "--output", "json"])
        .arg("--records")
        .arg(args.records.to_string())
        .arg("--record-size")
        .arg(args.record_size.to_string())
        .arg("--acks")
        .arg(&args.acks)
        .arg("--producers")
        .arg(point.producers.to_string())
        .arg("--bootstrap-server")
        .arg(bootstrap)
        .args(args.bench_args.split_whitespace())
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let out = cmd.output().expect("strom bench produce");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "strom bench produce against {bootstrap} failed: {text}"
    );
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("strom bench printed no JSON ({e}): {text}"));
    doc["produce"]["records_per_sec"]
        .as_f64()
        .unwrap_or_else(|| panic!("no produce.records_per_sec in {text}"))
}

fn delete_topic(bin: &Path, bootstrap: &str, topic: &str) {
    let _ = Command::new(bin)
        .args(["topics", "delete", topic, "--bootstrap-server", bootstrap])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians (and ranges) of one target at the points of one sweep, in millions of records/s.
struct Curve {
    target: Target,
    /// (x, median, min, max)
    points: Vec<(f64, f64, f64, f64)>,
}

fn curve(target: Target, xs: &[f64], runs: &[Vec<Run>]) -> Curve {
    let points = xs
        .iter()
        .zip(runs)
        .filter(|(_, r)| !r.is_empty())
        .map(|(&x, r)| {
            let v: Vec<f64> = r.iter().map(|r| r.records_per_sec / 1e6).collect();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (x, median(v), lo, hi)
        })
        .collect();
    Curve { target, points }
}

fn color(target: Target) -> RGBColor {
    match target {
        Target::Strom => RGBColor(0x1f, 0x77, 0xb4),
        Target::Mock => RGBColor(0xd6, 0x27, 0x28),
    }
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    x_desc: &str,
    curves: &[Curve],
) -> PlotResult {
    let xs: Vec<f64> = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .collect();
    let x_max = xs.iter().copied().fold(1.0, f64::max);
    let y_max = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.3))
        .fold(0.1, f64::max)
        * 1.15;
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64);
    let mut chart = builder.build_cartesian_2d((0.7f64..x_max * 1.6).log_scale(), 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("million records/s (median)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .max_light_lines(1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    draw_curves(&mut chart, curves)?;
    Ok(())
}

type LogChart<'a> = ChartContext<
    'a,
    BitMapBackend<'a>,
    Cartesian2d<LogCoord<f64>, plotters::coord::types::RangedCoordf64>,
>;

fn draw_curves(chart: &mut LogChart<'_>, curves: &[Curve]) -> PlotResult {
    for c in curves {
        let col = color(c.target);
        let line: Vec<(f64, f64)> = c.points.iter().map(|p| (p.0, p.1)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), col.stroke_width(2)))?
            .label(c.target.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], col.stroke_width(2)));
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, col.filled())))?;
        // The range of the repetitions.
        chart.draw_series(
            c.points
                .iter()
                .map(|p| PathElement::new(vec![(p.0, p.2), (p.0, p.3)], col.stroke_width(1))),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn plot(
    path: &Path,
    subtitle: &str,
    by_partitions: &[Curve],
    by_producers: &[Curve],
    args: &Args,
) -> PlotResult {
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "the embedded DejaVu Sans font did not load")?;
    let (w, h) = (1200u32, 560u32);
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, body) = root.split_vertically(44);
        top.draw(&Text::new(
            subtitle.to_string(),
            (16, 14),
            ("sans-serif", 16).into_font(),
        ))?;
        let (left, right) = body.split_horizontally(w / 2);
        panel(
            &left,
            &format!(
                "by partitions ({} producer{})",
                args.partition_sweep_producers,
                if args.partition_sweep_producers == 1 {
                    ""
                } else {
                    "s"
                }
            ),
            "partitions (log scale)",
            by_partitions,
        )?;
        panel(
            &right,
            &format!(
                "by producers ({} partitions)",
                args.producer_sweep_partitions
            ),
            "producers (log scale)",
            by_producers,
        )?;
        root.present()?;
    }
    let file = std::fs::File::create(path)?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&pixels)?;
    Ok(())
}

fn main() {
    let args = Args::parse();
    assert!(args.repeat >= 1, "--repeat must be at least 1");
    let bin = strom_bin(args.strom_bin.as_deref());
    assert!(
        bin.exists(),
        "{} not found: cargo build --release -p strom",
        bin.display()
    );
    let broker = Broker::start(&bin);
    let pid = broker.pid().to_string();
    let mock = if args.skip_mock {
        None
    } else {
        Some(MockCluster::new(1).expect("mock cluster"))
    };
    let mut targets = vec![(Target::Strom, broker.bootstrap())];
    if let Some(m) = &mock {
        targets.push((Target::Mock, m.bootstrap_servers()));
    }

    let mut points: Vec<Point> = args
        .partitions
        .iter()
        .map(|&p| Point {
            partitions: p,
            producers: args.partition_sweep_producers,
        })
        .collect();
    let producer_points: Vec<Point> = args
        .producers
        .iter()
        .map(|&k| Point {
            partitions: args.producer_sweep_partitions,
            producers: k,
        })
        .collect();
    points.extend(producer_points.iter().copied());

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "strom-scaling: {} records of {} bytes per run, acks={}, {} runs per point; load average {}",
        args.records,
        args.record_size,
        args.acks,
        args.repeat,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    // runs[target][point]
    let mut runs: Vec<Vec<Vec<Run>>> = vec![vec![Vec::new(); points.len()]; targets.len()];
    let mut log = Vec::new();
    for rep in 0..args.repeat {
        for (i, point) in points.iter().enumerate() {
            for (t, (target, bootstrap)) in targets.iter().enumerate() {
                let topic = format!(
                    "scaling-{i}-p{}-k{}-r{rep}",
                    point.partitions, point.producers
                );
                match target {
                    Target::Strom => create_topic(&bin, bootstrap, &topic, point.partitions),
                    Target::Mock => mock
                        .as_ref()
                        .expect("mock")
                        .create_topic(&topic, point.partitions, 1)
                        .expect("mock topic"),
                }
                let cpu0 = cpu_seconds(&pid);
                let rps = bench_produce(&bin, bootstrap, &topic, *point, &args);
                let cpu_per_gib = (*target == Target::Strom).then(|| {
                    let gib = (args.records * args.record_size as u64) as f64
                        / (1024.0 * 1024.0 * 1024.0);
                    (cpu_seconds(&pid) - cpu0) / gib
                });
                if *target == Target::Strom {
                    delete_topic(&bin, bootstrap, &topic);
                    std::thread::sleep(Duration::from_millis(200));
                }
                eprintln!(
                    "run {rep}: {} partitions, {} producers, {}: {rps:.0} records/s{}",
                    point.partitions,
                    point.producers,
                    target.name(),
                    cpu_per_gib.map_or(String::new(), |c| format!(", broker {c:.2} CPU-s/GiB"))
                );
                log.push(json!({
                    "repetition": rep,
                    "target": target.name(),
                    "partitions": point.partitions,
                    "producers": point.producers,
                    "records_per_sec": rps.round(),
                    "broker_cpu_s_per_gib": cpu_per_gib,
                }));
                runs[t][i].push(Run {
                    records_per_sec: rps,
                    cpu_per_gib,
                });
            }
        }
    }
    drop(broker);

    println!(
        "| partitions | producers | strom records/s (median) | mock records/s (median) | strom / mock | strom broker CPU-s per GiB (median) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (i, point) in points.iter().enumerate() {
        let s = median(runs[0][i].iter().map(|r| r.records_per_sec).collect());
        let cpu = median(runs[0][i].iter().filter_map(|r| r.cpu_per_gib).collect());
        let m = runs
            .get(1)
            .map(|r| median(r[i].iter().map(|r| r.records_per_sec).collect()));
        println!(
            "| {} | {} | {s:.0} | {} | {} | {cpu:.2} |",
            point.partitions,
            point.producers,
            m.map_or("-".into(), |m| format!("{m:.0}")),
            m.map_or("-".into(), |m| format!("{:.2}", s / m)),
        );
    }

    let n = args.partitions.len();
    let part_x: Vec<f64> = args.partitions.iter().map(|&p| p as f64).collect();
    let prod_x: Vec<f64> = args.producers.iter().map(|&k| k as f64).collect();
    let mut by_partitions = Vec::new();
    let mut by_producers = Vec::new();
    for (t, (target, _)) in targets.iter().enumerate() {
        by_partitions.push(curve(*target, &part_x, &runs[t][..n]));
        by_producers.push(curve(*target, &prod_x, &runs[t][n..]));
    }
    let subtitle = format!(
        "strom bench produce, {} x {} B records per run, acks={}, median of {} runs (bars: range){}; {} cores",
        args.records,
        args.record_size,
        args.acks,
        args.repeat,
        if args.bench_args.is_empty() {
            String::new()
        } else {
            format!(", {}", args.bench_args)
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    plot(&args.png, &subtitle, &by_partitions, &by_producers, &args)
        .unwrap_or_else(|e| panic!("plotting {}: {e}", args.png.display()));
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| args.png.with_extension("json"));
    let doc = json!({
        "records": args.records,
        "record_size": args.record_size,
        "acks": args.acks,
        "repeat": args.repeat,
        "bench_args": args.bench_args,
        "load_average_before": load.trim(),
        "runs": log,
    });
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&doc).expect("json") + "\n",
    )
    .unwrap_or_else(|e| panic!("writing {}: {e}", json_path.display()));
    eprintln!("wrote {} and {}", args.png.display(), json_path.display());
}
