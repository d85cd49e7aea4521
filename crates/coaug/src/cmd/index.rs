use std::path::PathBuf;

use super::retrieval::{default_index_dir, open_or_build_index_streaming};
use super::DatasetArgs;
use anyhow::Result;

/// Builds the BM25 index of a dataset's corpus, or confirms that the one on disk matches it.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// Where to put the index (default: the cache, one folder per dataset).
    #[arg(long, value_name = "DIR")]
    pub index_dir: Option<PathBuf>,

    #[command(flatten)]
    pub bm25: super::retrieval::Bm25Args,
}

pub fn run(args: Args) -> Result<()> {
    crate::memory::return_freed_memory();
    let dataset = args.dataset.resolve()?;
    let (stop_list, analyzer) = args.bm25.analyzer()?;
    let dir = args.index_dir.unwrap_or_else(|| default_index_dir(&dataset, &stop_list));
    // Streamed: the corpus is read as it is indexed, never held whole.
    let index = open_or_build_index_streaming(&dir, &dataset, &analyzer)?;
    println!("{} documents indexed in {}", index.num_docs(), dir.display());
    Ok(())
}
