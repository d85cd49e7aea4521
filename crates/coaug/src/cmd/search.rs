use std::path::PathBuf;

use anyhow::{bail, Result};
use coaug_index::Bm25Index;

/// Searches a BM25 index built by `coaug index` (or `coaug eval`) and prints the top hits.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The index folder.
    #[arg(long, value_name = "DIR")]
    pub index: PathBuf,

    /// Number of hits to print.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,

    /// The query text.
    pub query: String,

    /// Expand the query with the LM first (through the augmentation store) and print it.
    #[arg(long)]
    pub augment_query: bool,

    #[command(flatten)]
    pub composition: super::augmented_eval::CompositionArgs,

    #[command(flatten)]
    pub model: super::augment::ModelArgs,

    #[command(flatten)]
    pub generation: super::augment::GenerationArgs,
}

pub fn run(args: Args) -> Result<()> {
    if !args.index.exists() {
        bail!("no index at {} (build one with `coaug index`)", args.index.display());
    }
    let index = Bm25Index::open(&args.index)?;
    let composition = args.composition.one()?;
    let expansions =
        if args.augment_query { super::augment::expand_one_query(&args.model, &args.generation, &args.query, &index)? } else { Vec::new() };
    if args.augment_query {
        println!("augmented query: {}", composition.query_text(&args.query, &expansions).replace('\n', " ⏎ "));
    }
    // The same composition and weights as `coaug eval`.
    let query = coaug_retrieval::QueryToRank { id: "query", text: &args.query, expansions: &expansions };
    let hits = coaug_retrieval::search_hits(&index, &composition, &query, args.k);
    if hits.is_empty() {
        println!("no document matches {:?}", args.query);
    }
    for (rank, hit) in hits.iter().enumerate() {
        let doc = index.document(hit.doc)?;
        let title: String = if doc.title.is_empty() { doc.text.chars().take(80).collect() } else { doc.title };
        println!("{:>3}. {:>8.4}  {}  {}", rank + 1, hit.score, doc.id, title);
    }
    Ok(())
}
