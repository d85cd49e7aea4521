//! Embeddings on disk: a raw little-endian matrix (f32, or f16 at half the size) that is
//! memory-mapped for search, the document ids beside it, and a manifest saying which
//! encoder and which texts produced it — so a stale store is rebuilt, never misused.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{bail, Context, Result};
use half::f16;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::embeddings::{Embeddings, VectorRows};

pub const STORE_FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const VECTORS: &str = "vectors.bin";
const IDS: &str = "ids.json";

/// Element type of the stored matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredPrecision {
    F32,
    /// Half the disk and page cache; cosine changes by ~1e-3, rankings barely.
    F16,
}

impl StoredPrecision {
    fn bytes(self) -> usize {
        match self {
            StoredPrecision::F32 => 4,
            StoredPrecision::F16 => 2,
        }
    }
}

/// What a store holds and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreManifest {
    pub format: u32,
    pub encoder: String,
    pub dim: usize,
    pub count: usize,
    pub precision: StoredPrecision,
    /// Caller-chosen digest of encoder + texts (see `fingerprint`); reuse only on equality.
    pub fingerprint: String,
}

/// sha256 over the parts, each length-prefixed so that boundaries matter.
pub fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Writes a store into `dir` (replacing what was there) via a sibling temp folder + rename.
pub fn write_store(
    dir: &Path,
    ids: &[String],
    embeddings: &Embeddings,
    precision: StoredPrecision,
    encoder: &str,
    fingerprint: &str,
) -> Result<()> {
    if ids.len() != embeddings.len() {
        bail!("{} ids for {} vectors", ids.len(), embeddings.len());
    }
    let parent = dir.parent().context("store dir has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::tempdir_in(parent)?;
    let mut bytes = Vec::with_capacity(embeddings.as_slice().len() * precision.bytes());
    match precision {
        StoredPrecision::F32 => embeddings.as_slice().iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes())),
        StoredPrecision::F16 => embeddings.as_slice().iter().for_each(|x| bytes.extend_from_slice(&f16::from_f32(*x).to_le_bytes())),
    }
    std::fs::write(tmp.path().join(VECTORS), bytes)?;
    std::fs::write(tmp.path().join(IDS), serde_json::to_vec(ids)?)?;
    let manifest = StoreManifest {
        format: STORE_FORMAT,
        encoder: encoder.to_owned(),
        dim: embeddings.dim(),
        count: ids.len(),
        precision,
        fingerprint: fingerprint.to_owned(),
    };
    std::fs::write(tmp.path().join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing old store {}", dir.display()))?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, dir).with_context(|| format!("moving store into {}", dir.display()))?;
    Ok(())
}

/// Reads only the manifest (to decide whether a store can be reused).
pub fn read_manifest(dir: &Path) -> Result<Option<StoreManifest>> {
    match std::fs::read(dir.join(MANIFEST)) {
        Ok(b) => Ok(serde_json::from_slice(&b).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.join(MANIFEST).display())),
    }
}

/// A store opened for search: vectors memory-mapped, ids in memory.
pub struct MappedEmbeddings {
    manifest: StoreManifest,
    ids: Vec<String>,
    map: Mmap,
}

impl MappedEmbeddings {
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = read_manifest(dir)?.with_context(|| format!("{} has no readable {MANIFEST}", dir.display()))?;
        if manifest.format != STORE_FORMAT {
            bail!("{}: store format {} (this coaug reads {STORE_FORMAT})", dir.display(), manifest.format);
        }
        let ids: Vec<String> =
            serde_json::from_slice(&std::fs::read(dir.join(IDS))?).with_context(|| format!("parsing {}", dir.join(IDS).display()))?;
        let file = std::fs::File::open(dir.join(VECTORS))?;
        // SAFETY: read-only map of a file coaug only ever replaces by rename, never rewrites in place.
        let map = unsafe { Mmap::map(&file)? };
        let expected = manifest.count * manifest.dim * manifest.precision.bytes();
        if ids.len() != manifest.count || map.len() != expected {
            bail!(
                "{}: {} ids and {} bytes of vectors, manifest says {} × {}",
                dir.display(),
                ids.len(),
                map.len(),
                manifest.count,
                manifest.dim
            );
        }
        Ok(Self { manifest, ids, map })
    }

    pub fn manifest(&self) -> &StoreManifest {
        &self.manifest
    }

    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Copies everything into memory as f32.
    pub fn to_embeddings(&self) -> Embeddings {
        Embeddings::new(self.manifest.dim, self.rows(0, self.manifest.count).into_owned())
    }
}

impl VectorRows for MappedEmbeddings {
    fn dim(&self) -> usize {
        self.manifest.dim
    }
    fn len(&self) -> usize {
        self.manifest.count
    }
    fn rows(&self, start: usize, end: usize) -> Cow<'_, [f32]> {
        let d = self.manifest.dim;
        let width = self.manifest.precision.bytes();
        let bytes = &self.map[start * d * width..end * d * width];
        match self.manifest.precision {
            StoredPrecision::F32 => {
                let aligned = bytes.as_ptr().align_offset(std::mem::align_of::<f32>()) == 0;
                if cfg!(target_endian = "little") && aligned {
                    // SAFETY: aligned, in bounds, any bit pattern is a valid f32, and the map outlives the borrow.
                    Cow::Borrowed(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) })
                } else {
                    Cow::Owned(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
                }
            }
            StoredPrecision::F16 => Cow::Owned(bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<String>, Embeddings) {
        let ids = vec!["a".to_string(), "b".into(), "c".into()];
        let data: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) / 7.0).collect();
        (ids, Embeddings::new(4, data))
    }

    #[test]
    fn round_trips_f32_exactly_and_f16_closely() {
        let dir = tempfile::tempdir().unwrap();
        let (ids, emb) = sample();
        let store = dir.path().join("s32");
        write_store(&store, &ids, &emb, StoredPrecision::F32, "enc", "fp").unwrap();
        let mapped = MappedEmbeddings::open(&store).unwrap();
        assert_eq!(mapped.ids(), &ids[..]);
        assert_eq!(mapped.to_embeddings(), emb);
        assert_eq!(&*mapped.rows(1, 2), emb.row(1));

        let store16 = dir.path().join("s16");
        write_store(&store16, &ids, &emb, StoredPrecision::F16, "enc", "fp").unwrap();
        let m16 = MappedEmbeddings::open(&store16).unwrap();
        assert_eq!(std::fs::metadata(store16.join(VECTORS)).unwrap().len(), 12 * 2);
        for (a, b) in m16.to_embeddings().as_slice().iter().zip(emb.as_slice()) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        assert_eq!(read_manifest(&store16).unwrap().unwrap().precision, StoredPrecision::F16);
    }

    #[test]
    fn rejects_truncated_vectors_and_mismatched_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (ids, emb) = sample();
        let store = dir.path().join("s");
        assert!(write_store(&store, &ids[..2], &emb, StoredPrecision::F32, "enc", "fp").is_err());
        write_store(&store, &ids, &emb, StoredPrecision::F32, "enc", "fp").unwrap();
        std::fs::write(store.join(VECTORS), [0u8; 10]).unwrap();
        assert!(MappedEmbeddings::open(&store).is_err());
        assert_ne!(fingerprint(["ab", "c"]), fingerprint(["a", "bc"]));
    }
}
