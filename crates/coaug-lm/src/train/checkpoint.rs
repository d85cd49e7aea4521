//! Training checkpoints (trained tensors + optimizer moments + step) and merged HF export.
//! Every file is written to a temporary name and renamed, so a crash never leaves a
//! half-written checkpoint under the final name.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};

use crate::model::CausalLm;
use crate::text::tokenizer::LmTokenizer;
use crate::train::optim::AdamW;
use crate::train::trainable::{Trainable, TrainableSet};

const META_SET: &str = "__meta.trainable_set";
const META_STEP: &str = "__meta.step";
const PARAM: &str = "param.";
const ADAM_M: &str = "adam_m.";
const ADAM_V: &str = "adam_v.";

/// What a checkpoint restored besides the weights.
pub struct LoadedCheckpoint {
    pub trainable: Trainable,
    pub step: u64,
    /// First and second moments per trainable var, when the checkpoint holds them.
    pub moments: Option<(Vec<Tensor>, Vec<Tensor>)>,
}

/// Saves the trainable tensors (and the optimizer state when given) as one safetensors file.
pub fn save_checkpoint(path: &Path, trainable: &Trainable, optimizer: Option<&AdamW>) -> Result<()> {
    let mut map: HashMap<String, Tensor> = HashMap::new();
    let set_json = serde_json::to_vec(&trainable.set)?;
    let n = set_json.len();
    map.insert(META_SET.into(), Tensor::from_vec(set_json, n, &Device::Cpu)?);
    let step = optimizer.map(|o| o.step).unwrap_or(0);
    map.insert(META_STEP.into(), Tensor::from_vec(vec![step as i64], 1, &Device::Cpu)?);
    for (name, var) in &trainable.vars {
        map.insert(format!("{PARAM}{name}"), var.as_tensor().detach());
    }
    if let Some(o) = optimizer {
        for (i, (name, _)) in o.vars.iter().enumerate() {
            map.insert(format!("{ADAM_M}{name}"), o.m[i].clone());
            map.insert(format!("{ADAM_V}{name}"), o.v[i].clone());
        }
    }
    write_atomically(path, |tmp| Ok(candle_core::safetensors::save(&map, tmp)?))
}

/// Makes the checkpoint's trainable set trainable on `model` (adding adapters when it
/// used LoRA) and loads its tensors. `model` must be the base the checkpoint started from.
pub fn load_checkpoint(model: &mut CausalLm, path: &Path) -> Result<LoadedCheckpoint> {
    let mut map = candle_core::safetensors::load(path, model.device()).with_context(|| format!("reading {}", path.display()))?;
    let set_bytes =
        map.remove(META_SET).ok_or_else(|| anyhow!("{}: not a coaug checkpoint (no {META_SET})", path.display()))?.to_vec1::<u8>()?;
    let set: TrainableSet = serde_json::from_slice(&set_bytes).with_context(|| format!("{}: bad trainable set", path.display()))?;
    let step = map.remove(META_STEP).map(|t| t.to_vec1::<i64>()).transpose()?.and_then(|v| v.first().copied()).unwrap_or(0) as u64;
    let trainable = model.set_trainable(&set)?;
    let mut ms = Vec::new();
    let mut vs = Vec::new();
    for (name, var) in &trainable.vars {
        let t = map.remove(&format!("{PARAM}{name}")).ok_or_else(|| anyhow!("{}: missing tensor {PARAM}{name}", path.display()))?;
        if t.dims() != var.dims() {
            bail!("{}: {name} has shape {:?}, the model expects {:?}", path.display(), t.dims(), var.dims());
        }
        var.set(&t.to_dtype(DType::F32)?)?;
        if let (Some(m), Some(v)) = (map.remove(&format!("{ADAM_M}{name}")), map.remove(&format!("{ADAM_V}{name}"))) {
            ms.push(m);
            vs.push(v);
        }
    }
    let moments = if !trainable.vars.is_empty() && ms.len() == trainable.vars.len() { Some((ms, vs)) } else { None };
    Ok(LoadedCheckpoint { trainable, step, moments })
}

impl AdamW {
    /// Continues from a loaded checkpoint's step and moments (fresh moments when absent).
    pub fn resume(loaded: &LoadedCheckpoint, config: crate::train::optim::AdamWConfig) -> Result<Self> {
        let mut opt = AdamW::new(&loaded.trainable, config)?;
        opt.step = loaded.step;
        if let Some((m, v)) = &loaded.moments {
            opt.m = m.clone();
            opt.v = v.clone();
        }
        Ok(opt)
    }
}

/// Writes a standalone HF directory (`config.json`, `model.safetensors`, `tokenizer.json`)
/// with adapters merged into the weights.
pub fn export_hf(model: &CausalLm, tokenizer: &LmTokenizer, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tensors: HashMap<String, Tensor> = model.merged_tensors()?.into_iter().collect();
    write_atomically(&dir.join("model.safetensors"), |tmp| Ok(candle_core::safetensors::save(&tensors, tmp)?))?;
    let cfg = serde_json::to_string_pretty(&model.config().to_hf_json())?;
    write_atomically(&dir.join("config.json"), |tmp| Ok(std::fs::write(tmp, &cfg)?))?;
    write_atomically(&dir.join("tokenizer.json"), |tmp| tokenizer.save(tmp))?;
    Ok(())
}

/// Runs `write` on a temporary sibling of `path`, then renames it over `path`.
fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .suffix(&format!("-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("out")))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    write(tmp.path()).with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path).map_err(|e| anyhow!("renaming into {}: {e}", path.display()))?;
    Ok(())
}
