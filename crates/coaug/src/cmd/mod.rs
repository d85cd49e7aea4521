pub mod augment;
pub mod augmented_eval;
pub mod bench;
pub mod data;
pub mod dense;
pub mod eval;
pub mod index;
pub mod model;
pub mod plot;
pub mod retrieval;
pub mod search;
pub mod serve;
pub mod train;

use std::path::PathBuf;

/// Which dataset, and where to look for it.
#[derive(clap::Args, Debug, Clone)]
pub struct DatasetArgs {
    /// BEIR dataset name (nfcorpus, scifact, …): a folder `<name>/` under the data directory.
    #[arg(long, default_value = "nfcorpus")]
    pub dataset: String,

    /// Folder holding `<dataset>/` (default: $COAUG_DATA; else the user cache, downloading the
    /// official BEIR zip on first use). Offline here: `--data-dir ../shared/data/beir`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DatasetArgs {
    pub fn resolve(&self) -> anyhow::Result<coaug_data::Dataset> {
        Ok(coaug_data::resolve(&self.dataset, self.data_dir.as_deref())?)
    }
}

/// Where the policy LM runs.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// `cpu`, or `cuda` / `cuda:N` for GPU N (needs a binary built with `--features cuda`).
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda[:N]")]
    pub device: String,
}

impl DeviceArgs {
    pub fn resolve(&self) -> anyhow::Result<candle_core::Device> {
        parse_device(&self.device)
    }
}

pub fn parse_device(spec: &str) -> anyhow::Result<candle_core::Device> {
    use anyhow::Context;
    let ordinal = match spec {
        "cpu" => return Ok(candle_core::Device::Cpu),
        "cuda" | "gpu" => 0,
        s => match s.strip_prefix("cuda:") {
            Some(n) => n.parse::<usize>().with_context(|| format!("--device {s}: `{n}` is not a GPU number"))?,
            None => anyhow::bail!("--device {s}: expected `cpu`, `cuda` or `cuda:N`"),
        },
    };
    if !candle_core::utils::cuda_is_available() {
        anyhow::bail!(
            "--device {spec}: this coaug was built without CUDA; rebuild with \
             `cargo build --release -p coaug --features cuda` (needs the CUDA toolkit's nvcc)"
        );
    }
    candle_core::Device::new_cuda(ordinal).with_context(|| format!("--device {spec}: opening GPU {ordinal}"))
}

/// Writes `value` as pretty JSON (a trailing newline) to `path`.
pub fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::parse_device;

    #[test]
    fn device_specs() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        let bad = parse_device("tpu").unwrap_err().to_string();
        assert!(bad.contains("expected `cpu`, `cuda` or `cuda:N`"), "{bad}");
        let bad = parse_device("cuda:x").unwrap_err().to_string();
        assert!(bad.contains("not a GPU number"), "{bad}");
        if !candle_core::utils::cuda_is_available() {
            let msg = parse_device("cuda").unwrap_err().to_string();
            assert!(msg.contains("--features cuda"), "{msg}");
        }
    }
}
