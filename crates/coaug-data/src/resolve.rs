//! Finding a dataset by name: an explicit data directory, else the user cache (downloading
//! into it on first use).
//!
//! An explicit directory (`--data-dir`, else `$COAUG_DATA`) is the only place looked in: when the
//! dataset is not there the error names that directory, and nothing is downloaded. A typo in a
//! path should not start a download somewhere else. Without one, datasets live in
//! `<cache root>/datasets/<name>` (cache root: `$COAUG_CACHE`, else `<user cache dir>/coaug`),
//! and a missing one is fetched from the BEIR mirror (`$COAUG_BEIR_URL` overrides it).

use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::download::{install_dataset, DatasetSource};
use crate::error::{DataDirOrigin, DataError, Result};

/// Where BEIR publishes its zips, as `<base>/<name>.zip`.
pub const DEFAULT_BEIR_URL: &str = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets";

/// Published md5 digests that are known to be right. BEIR's list gives SciFact FEVER's digest,
/// so SciFact (like any dataset not listed) is not verified.
const KNOWN_MD5: &[(&str, &str)] = &[("nfcorpus", "a89dba18a62ef92f7d323ec890a0d38d")];

pub fn known_md5(name: &str) -> Option<&'static str> {
    KNOWN_MD5.iter().find(|(n, _)| *n == name).map(|(_, md5)| *md5)
}

/// Everything resolution depends on, gathered once so tests need no environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    /// An explicitly chosen directory holding `<name>/`; when set, the only place looked in.
    pub data_dir: Option<(PathBuf, DataDirOrigin)>,
    /// Holds downloaded datasets as `<name>/`.
    pub cache_dir: PathBuf,
    /// Datasets are fetched from `<base_url>/<name>.zip`.
    pub base_url: String,
    pub show_progress: bool,
}

impl Resolver {
    /// `data_dir` (the CLI's `--data-dir`) wins over `$COAUG_DATA`; the cache root is
    /// `$COAUG_CACHE` or the user cache directory's `coaug/`; `$COAUG_BEIR_URL` replaces the
    /// mirror.
    pub fn from_env(data_dir: Option<&Path>) -> Result<Self> {
        let data_dir = match data_dir {
            Some(dir) => Some((dir.to_path_buf(), DataDirOrigin::Argument)),
            None => env_path("COAUG_DATA").map(|dir| (dir, DataDirOrigin::Environment)),
        };
        let cache_root = crate::cache::cache_root();
        let base_url = std::env::var("COAUG_BEIR_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| DEFAULT_BEIR_URL.to_owned());
        Ok(Self { data_dir, cache_dir: cache_root.join("datasets"), base_url, show_progress: true })
    }

    pub fn resolve(&self, name: &str) -> Result<Dataset> {
        check_name(name)?;
        if let Some((dir, origin)) = &self.data_dir {
            let path = dir.join(name);
            if !path.exists() {
                return Err(DataError::DatasetNotFound { name: name.to_owned(), searched: dir.clone(), origin: *origin });
            }
            return Dataset::open(path);
        }
        let cached = self.cache_dir.join(name);
        // Something already there is the user's (or a finished download): never overwrite it,
        // and let `open` say what is wrong with it.
        if cached.exists() {
            return Dataset::open(cached);
        }
        let source = DatasetSource { name, url: format!("{}/{name}.zip", self.base_url.trim_end_matches('/')), md5: known_md5(name) };
        install_dataset(&source, &self.cache_dir, self.show_progress)
    }
}

/// Resolves `name` as [`Resolver::from_env`] describes.
pub fn resolve(name: &str, data_dir: Option<&Path>) -> Result<Dataset> {
    Resolver::from_env(data_dir)?.resolve(name)
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Names become path components and URL segments: keep them to one plain component.
fn check_name(name: &str) -> Result<()> {
    let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || name.starts_with('.') || !plain {
        return Err(DataError::InvalidName { name: name.to_owned() });
    }
    Ok(())
}
