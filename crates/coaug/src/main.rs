mod cmd;
mod memory;
mod paths;

use clap::{Parser, Subcommand};

/// coaug: query–document co-augmentation for retrieval, trained with bidirectional RL.
///
/// Datasets are BEIR directories. Offline, point coaug at a local copy with
/// `COAUG_DATA=DIR` (holding `nfcorpus/`, `scifact/`, …) or `--data-dir DIR`.
#[derive(Parser)]
#[command(name = "coaug", version, propagate_version = true)]
struct Cli {
    /// Log verbosity (error, warn, info, debug, trace); `RUST_LOG` overrides it.
    #[arg(long, global = true, default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

// The command is parsed once per process: boxing the large argument sets would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Resolve, download and validate BEIR datasets.
    Data(cmd::data::Args),
    /// Build (or reuse) the BM25 index of a dataset.
    Index(cmd::index::Args),
    /// Augment a dataset's documents or queries with the LM into the resumable store.
    Augment(cmd::augment::Args),
    /// Search an index with free text and print the top hits.
    Search(cmd::search::Args),
    /// Retrieve for a split's queries and score the run with BEIR's metrics.
    Eval(cmd::eval::Args),
    /// Serve an index as an HTTP search API (POST /search, GET /health, GET /metrics), with
    /// query augmentation batched across concurrent requests.
    Serve(Box<cmd::serve::Args>),
    /// Train the policy LM with bidirectional RL (composite sampling, reward sampling).
    Train(cmd::train::Args),
    /// Draw a training run's reward and validation nDCG curves as PNGs.
    Plot(cmd::plot::Args),
    /// Fetch the default policy LM or inspect a model file.
    #[command(subcommand)]
    Model(cmd::model::Command),
    /// Measure coaug against its peers (bm25s, llama.cpp) in the same run.
    #[command(subcommand)]
    Bench(cmd::bench::Command),
}

fn main() -> std::process::ExitCode {
    memory::keep_freed_memory();
    let cli = Cli::parse();
    init_tracing(&cli.log);
    let result = match cli.command {
        Command::Data(args) => cmd::data::run(args),
        Command::Index(args) => cmd::index::run(args),
        Command::Augment(args) => cmd::augment::run(args),
        Command::Search(args) => cmd::search::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Serve(args) => cmd::serve::run(*args),
        Command::Train(args) => cmd::train::run(args),
        Command::Plot(args) => cmd::plot::run(args),
        Command::Model(command) => cmd::model::run(command),
        Command::Bench(command) => cmd::bench::run(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(level: &str) {
    use tracing_subscriber::EnvFilter;
    // hnsw_rs logs its build parameters at info level: noise between a benchmark's figures.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("{level},hnsw_rs=warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
