//! Fetching a BEIR zip into the cache so that a half-finished download never looks like a
//! dataset: the zip goes to a temporary file in the cache directory, is verified, unpacked into
//! a temporary directory beside it, checked, and only then renamed to `<cache>/<name>`.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use md5::{Digest, Md5};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};

/// Temporary files and directories in the cache all start with this.
const TEMP_PREFIX: &str = ".coaug-";
/// A temporary untouched this long belongs to a process that died: an active download
/// writes its file continuously, and unpacking takes seconds.
const STALE_AFTER: Duration = Duration::from_secs(15 * 60);
/// A stalled connection fails after this long without a byte, instead of hanging.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What to fetch: `url` serves a zip holding `<name>/corpus.jsonl`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSource<'a> {
    pub name: &'a str,
    pub url: String,
    /// Verified when known; `None` skips verification.
    pub md5: Option<&'a str>,
}

/// Downloads, verifies and unpacks `source` into `cache_dir/<name>`, returning the dataset.
/// On any failure nothing named `<name>` is left behind.
pub fn install_dataset(source: &DatasetSource, cache_dir: &Path, show_progress: bool) -> Result<Dataset> {
    fs::create_dir_all(cache_dir).map_err(|e| DataError::io(cache_dir, e))?;
    remove_stale_temporaries(cache_dir);

    let mut archive = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-", source.name))
        .suffix(".zip.part")
        .tempfile_in(cache_dir)
        .map_err(|e| DataError::io(cache_dir, e))?;
    let digest = fetch(&source.url, archive.as_file_mut(), show_progress)?;
    if let Some(expected) = source.md5 {
        if !digest.eq_ignore_ascii_case(expected) {
            return Err(DataError::ChecksumMismatch { url: source.url.clone(), expected: expected.to_owned(), actual: digest });
        }
    }

    let staging = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-", source.name))
        .tempdir_in(cache_dir)
        .map_err(|e| DataError::io(cache_dir, e))?;
    unpack(archive.path(), staging.path()).map_err(|message| DataError::Archive { url: source.url.clone(), message })?;
    let unpacked = dataset_root(staging.path(), source.name);
    Dataset::open(&unpacked)
        .map_err(|e| DataError::Archive { url: source.url.clone(), message: format!("does not hold a BEIR dataset: {e}") })?;

    let destination = cache_dir.join(source.name);
    if let Err(e) = fs::rename(&unpacked, &destination) {
        // Another process may have finished the same download first; its copy is as good.
        if Dataset::open(&destination).is_err() {
            return Err(DataError::io(&destination, e));
        }
    }
    tracing::info!("installed {} into {}", source.url, destination.display());
    Dataset::open(destination)
}

/// Streams `url` into `out`, returning the body's md5 as lowercase hex.
fn fetch(url: &str, out: &mut File, show_progress: bool) -> Result<String> {
    let failed = |message: String| DataError::Download { url: url.to_owned(), message };
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_connect(Some(READ_TIMEOUT)).timeout_per_read(Some(READ_TIMEOUT)).build().into();
    let mut response = agent.get(url).call().map_err(|e| failed(e.to_string()))?;
    let expected_len = response.body().content_length();
    let progress = progress_bar(url, expected_len, show_progress);

    let mut reader = response.body_mut().as_reader();
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut received: u64 = 0;
    loop {
        let n = reader.read(&mut buf).map_err(|e| failed(format!("after {received} bytes: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| failed(format!("writing the download: {e}")))?;
        received += n as u64;
        progress.inc(n as u64);
    }
    out.flush().map_err(|e| failed(format!("writing the download: {e}")))?;
    progress.finish_and_clear();
    if let Some(expected) = expected_len.filter(|&len| len != received) {
        return Err(failed(format!("truncated: received {received} of {expected} bytes")));
    }
    Ok(hex::encode(hasher.finalize()))
}

fn progress_bar(url: &str, len: Option<u64>, visible: bool) -> ProgressBar {
    let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let (bar, template) = match len {
        Some(len) => (ProgressBar::with_draw_target(Some(len), target), "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"),
        None => (ProgressBar::with_draw_target(None, target), "{spinner} {msg} {bytes} {bytes_per_sec}"),
    };
    let style = ProgressStyle::with_template(template).expect("valid template").progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(format!("downloading {}", url.rsplit('/').next().unwrap_or(url)));
    bar
}

fn unpack(archive: &Path, into: &Path) -> std::result::Result<(), String> {
    let file = File::open(archive).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a readable zip: {e}"))?;
    // `extract` refuses entries that would land outside `into`.
    zip.extract(into).map_err(|e| e.to_string())
}

/// BEIR zips hold `<name>/...`; a zip with the files at its top level is accepted too.
fn dataset_root(unpacked: &Path, name: &str) -> PathBuf {
    let nested = unpacked.join(name);
    if nested.is_dir() {
        nested
    } else {
        unpacked.to_path_buf()
    }
}

/// Best effort: a leftover we cannot remove costs disk space, not correctness.
fn remove_stale_temporaries(cache_dir: &Path) {
    let Ok(entries) = fs::read_dir(cache_dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.filter_map(|e| e.ok()) {
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
        if age < STALE_AFTER {
            continue;
        }
        let path = entry.path();
        let removed = if meta.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        match removed {
            Ok(()) => tracing::info!("removed stale temporary {}", path.display()),
            Err(e) => tracing::warn!("could not remove stale temporary {}: {e}", path.display()),
        }
    }
}
