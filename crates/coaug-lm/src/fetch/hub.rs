//! Models from the Hugging Face Hub: `--model org/name` (a safetensors repository: `config.json`,
//! `tokenizer.json`, `tokenizer_config.json`, the weights) or `--model org/name:file.gguf` (one
//! GGUF file), downloaded over plain HTTP into `<cache>/models/hub/` once.
//!
//! `$HF_ENDPOINT` replaces `https://huggingface.co` (a mirror, or a local server in tests) and
//! `$HF_TOKEN` is sent as a bearer token for gated repositories.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use coaug_data::cache::http_get;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A repository (and optionally one file in it) on the Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRepo {
    /// `org/name`.
    pub id: String,
    /// A single file to fetch (a GGUF), or `None` for a safetensors model folder.
    pub file: Option<String>,
    pub revision: String,
}

impl HubRepo {
    /// `org/name`, `org/name:file.gguf`, either with `@revision` after the name.
    pub fn parse(spec: &str) -> Option<Self> {
        let (repo, file) = match spec.split_once(':') {
            Some((r, f)) if !f.is_empty() => (r, Some(f.to_string())),
            Some(_) => return None,
            None => (spec, None),
        };
        let (id, revision) = match repo.split_once('@') {
            Some((id, rev)) if !rev.is_empty() => (id, rev.to_string()),
            Some(_) => return None,
            None => (repo, "main".to_string()),
        };
        let parts: Vec<&str> = id.split('/').collect();
        let plain = |p: &str| !p.is_empty() && p != "." && p != ".." && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if parts.len() != 2 || !parts.iter().all(|p| plain(p)) {
            return None;
        }
        if file.as_deref().is_some_and(|f| f.contains("..") || f.starts_with('/')) {
            return None;
        }
        Some(Self { id: id.to_string(), file, revision })
    }

    /// The local folder of this repository (and revision) in the cache.
    pub fn local_dir(&self, cache_dir: &Path) -> PathBuf {
        let name = self.id.replace('/', "--");
        let name = if self.revision == "main" { name } else { format!("{name}@{}", self.revision) };
        cache_dir.join("models").join("hub").join(name)
    }

    fn url(&self, endpoint: &str, file: &str) -> String {
        format!("{}/{}/resolve/{}/{file}", endpoint.trim_end_matches('/'), self.id, self.revision)
    }
}

/// Downloads `repo` into the cache unless it is there, and returns the path to load: the GGUF
/// file, or the folder of a safetensors model.
pub fn download(repo: &HubRepo, cache_dir: &Path) -> Result<PathBuf> {
    let endpoint = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()).unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
    download_from(repo, cache_dir, &endpoint, token.as_deref())
}

/// [`download`] from an explicit endpoint.
pub fn download_from(repo: &HubRepo, cache_dir: &Path, endpoint: &str, token: Option<&str>) -> Result<PathBuf> {
    let dir = repo.local_dir(cache_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if let Some(file) = &repo.file {
        let dest = dir.join(file);
        if !dest.is_file() {
            fetch_file(repo, endpoint, token, file, &dest)?;
        }
        return Ok(dest);
    }
    // A folder is complete once its marker exists: written after every file arrived.
    let marker = dir.join(".complete");
    if marker.is_file() {
        return Ok(dir);
    }
    for file in ["config.json", "tokenizer.json"] {
        fetch_file(repo, endpoint, token, file, &dir.join(file))?;
    }
    // Optional: the chat template and special tokens.
    if let Err(e) = fetch_file(repo, endpoint, token, "tokenizer_config.json", &dir.join("tokenizer_config.json")) {
        tracing::info!("{}: no tokenizer_config.json ({e:#})", repo.id);
    }
    for file in weight_files(repo, endpoint, token, &dir)? {
        fetch_file(repo, endpoint, token, &file, &dir.join(&file))?;
    }
    std::fs::write(&marker, b"").with_context(|| format!("writing {}", marker.display()))?;
    Ok(dir)
}

/// `model.safetensors`, or the shards listed in `model.safetensors.index.json`.
fn weight_files(repo: &HubRepo, endpoint: &str, token: Option<&str>, dir: &Path) -> Result<Vec<String>> {
    let index = dir.join("model.safetensors.index.json");
    if fetch_file(repo, endpoint, token, "model.safetensors.index.json", &index).is_err() {
        return Ok(vec!["model.safetensors".to_string()]);
    }
    let text = std::fs::read_to_string(&index).with_context(|| format!("reading {}", index.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", index.display()))?;
    let map = json.get("weight_map").and_then(|m| m.as_object()).with_context(|| format!("{}: no weight_map", index.display()))?;
    let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
    files.sort();
    files.dedup();
    if files.is_empty() || files.iter().any(|f| f.contains('/') || f.contains("..")) {
        bail!("{}: unexpected shard names {files:?}", index.display());
    }
    Ok(files)
}

/// Downloads one file beside `dest` and renames it into place.
fn fetch_file(repo: &HubRepo, endpoint: &str, token: Option<&str>, file: &str, dest: &Path) -> Result<()> {
    if dest.is_file() {
        return Ok(());
    }
    let url = repo.url(endpoint, file);
    let dir = dest.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("creating a temp file in {}", dir.display()))?;
    tracing::info!(%url, "downloading");
    http_get(&url, token, tmp.as_file_mut()).with_context(|| format!("downloading {file} of {}", repo.id))?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).with_context(|| format!("moving {file} to {}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_parse_with_file_and_revision() {
        let r = HubRepo::parse("Qwen/Qwen2.5-0.5B-Instruct").unwrap();
        assert_eq!((r.id.as_str(), r.file, r.revision.as_str()), ("Qwen/Qwen2.5-0.5B-Instruct", None, "main"));
        let r = HubRepo::parse("org/m-GGUF@v1:m.Q4_K_M.gguf").unwrap();
        assert_eq!((r.id.as_str(), r.file.as_deref(), r.revision.as_str()), ("org/m-GGUF", Some("m.Q4_K_M.gguf"), "v1"));
        for bad in ["name", "a/b/c", "../x", "a/..", "org/name:", "org/name@", "org/name:../x", "./name.gguf"] {
            assert!(HubRepo::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(r.url("http://h/", "f"), "http://h/org/m-GGUF/resolve/v1/f");
        assert!(r.local_dir(Path::new("/c")).ends_with("models/hub/org--m-GGUF@v1"));
    }
}
