pub mod augment;
pub mod augmented_eval;
pub mod bench;
pub mod data;
pub mod dense;
pub mod eval;
pub mod index;
pub mod model;
pub mod plot;
pub mod retrieval;
pub mod search;
pub mod train;

use std::path::PathBuf;

/// Which dataset, and where to look for it.
#[derive(clap::Args, Debug, Clone)]
pub struct DatasetArgs {
    /// BEIR dataset name (nfcorpus, scifact, …): a folder `<name>/` under the data directory.
    #[arg(long, default_value = "nfcorpus")]
    pub dataset: String,

    /// Folder holding `<dataset>/` (default: $COAUG_DATA; else the user cache, downloading the
    /// official BEIR zip on first use). Offline here: `--data-dir ../shared/data/beir`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DatasetArgs {
    pub fn resolve(&self) -> anyhow::Result<coaug_data::Dataset> {
        Ok(coaug_data::resolve(&self.dataset, self.data_dir.as_deref())?)
    }
}
