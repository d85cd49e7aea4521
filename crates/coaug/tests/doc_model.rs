//! `coaug eval --doc-model`: the documents are augmented by the second model, the queries by
//! `--model`. Checked through the store, whose keys include the model: afterwards each model alone
//! finds its side already generated, and the other side's augmentations are not its own.

use std::path::Path;
use std::process::{Command, Output};

use candle_core::Device;
use coaug_lm::{Architecture, CausalLm, ModelConfig};

mod common;
use common::{tokenizer, words, write_dataset};

fn export_random_model(dir: &Path, seed: u64) {
    let mut cfg = ModelConfig::tiny(Architecture::Llama, words().len());
    cfg.eos_token_id = Some(0);
    let model = CausalLm::random(&cfg, seed, &Device::Cpu).unwrap();
    coaug_lm::export_hf(&model, &tokenizer(), dir).unwrap();
}

/// The "N already stored, M generated" counts of each role's report on stderr ("queries: …",
/// "documents: …"), in order.
fn reports(out: &Output) -> Vec<(usize, usize)> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .filter(|l| l.starts_with("queries: ") || l.starts_with("documents: "))
        .filter_map(|l| {
            let stored = l.split(" already stored, ").next()?.rsplit(' ').next()?.parse().ok()?;
            let generated = l.split(" already stored, ").nth(1)?.split(' ').next()?.parse().ok()?;
            Some((stored, generated))
        })
        .collect()
}

#[test]
fn doc_model_writes_the_documents_and_model_the_queries() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("beir");
    write_dataset(&data_dir.join("tiny"));
    let (query_model, doc_model) = (tmp.path().join("query-model"), tmp.path().join("doc-model"));
    export_random_model(&query_model, 11);
    export_random_model(&doc_model, 12);
    let prompts = tmp.path().join("prompts.toml");
    std::fs::write(&prompts, "context_note = \"w1\"\n[query]\nsparse = \"w2 w9 <answer>\"\n[document]\nsparse = \"w3 w8 <answer>\"\n")
        .unwrap();

    let eval = |augment: &str, model: &Path, extra: &[&std::ffi::OsStr]| -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_coaug"))
            .args(["eval", "--dataset", "tiny", "--augment", augment, "--precision", "f32", "--max-new-tokens", "6"])
            .args(["--query-max-new-tokens", "6", "--max-input-tokens", "16", "--parse", "lenient"])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--prompts")
            .arg(&prompts)
            .arg("--store")
            .arg(tmp.path().join("store.sqlite"))
            .arg("--model")
            .arg(model)
            .args(extra)
            .env("COAUG_CACHE", tmp.path().join("cache"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out
    };

    let both = eval("both", &query_model, &["--doc-model".as_ref(), doc_model.as_os_str()]);
    assert_eq!(reports(&both), vec![(0, 4), (0, 12)], "4 queries by one model, then 12 documents by the other");
    assert!(String::from_utf8_lossy(&both.stdout).contains("documents by doc-model"), "{}", String::from_utf8_lossy(&both.stdout));
    // Each side was written by the model the flags named: it finds all of them stored...
    assert_eq!(reports(&eval("docs", &doc_model, &[])), vec![(12, 0)]);
    assert_eq!(reports(&eval("query", &query_model, &[])), vec![(4, 0)]);
    // ...and the other model finds none of them.
    assert_eq!(reports(&eval("docs", &query_model, &[])), vec![(0, 12)]);
}
