use anyhow::Result;

use super::DatasetArgs;

/// Finds the dataset (downloading it into the cache if needed), reads every file and reports
/// what it holds and any problems found.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// Qrels splits to check (default: every split the dataset has).
    #[arg(long, value_delimiter = ',')]
    pub split: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let dataset = args.dataset.resolve()?;
    println!("dataset {} at {}", dataset.name(), dataset.root().display());
    let splits = if args.split.is_empty() { dataset.splits() } else { args.split };
    for split in splits {
        let loaded = dataset.load_split(&split)?;
        let status = if loaded.report.is_clean() { "ok" } else { "with warnings" };
        println!("  {} ({status})", loaded.report);
    }
    Ok(())
}
