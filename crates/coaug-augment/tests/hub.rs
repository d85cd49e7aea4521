//! `--model org/name` downloads from a Hugging Face endpoint: here a local HTTP server that serves
//! a tiny model's folder, with a chat template of its own. The downloaded model loads, carries the
//! template, and generates what the original does.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use coaug_augment::{DecodeSettings, GenerationRequest, Generator, LmGenerator};
use coaug_lm::fetch::hub::{download_from, HubRepo};
use coaug_lm::Precision;

/// Serves `root/<org>/<name>/resolve/<rev>/<file>` as `root/<file>`; 404 for anything missing.
/// Returns the endpoint and a counter of requests answered with a file.
fn serve(root: PathBuf) -> (String, Arc<AtomicUsize>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", server.server_addr().to_ip().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let file = request.url().rsplit('/').next().map(|f| root.join(f)).filter(|p| p.is_file());
            let _ = match file {
                Some(path) => {
                    count.fetch_add(1, Ordering::SeqCst);
                    request.respond(tiny_http::Response::from_file(std::fs::File::open(path).unwrap()))
                }
                None => request.respond(tiny_http::Response::empty(404)),
            };
        }
    });
    (endpoint, served)
}

const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m['role'] }}: {{ m['content'] }}<|im_end|>{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant: {% endif %}";

fn write_model(dir: &Path) -> LmGenerator {
    let mut g = LmGenerator::tiny_random(3).unwrap();
    let tokenizer = g.tokenizer().clone();
    coaug_lm::export_hf(g.model().unwrap(), &tokenizer, dir).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::json!({"chat_template": TEMPLATE, "eos_token": "<|im_end|>"}).to_string(),
    )
    .unwrap();
    g
}

#[test]
fn a_hub_repository_downloads_once_and_loads_with_its_template() {
    let tmp = tempfile::tempdir().unwrap();
    let served_dir = tmp.path().join("served");
    let _original = write_model(&served_dir);
    let (endpoint, served) = serve(served_dir.clone());
    let cache = tmp.path().join("cache");
    let repo = HubRepo::parse("tiny-org/tiny-model").unwrap();

    let dir = download_from(&repo, &cache, &endpoint, None).unwrap();
    assert_eq!(dir, cache.join("models/hub/tiny-org--tiny-model"));
    // config, tokenizer, tokenizer_config and the weights (the shard index was a 404).
    assert_eq!(served.load(Ordering::SeqCst), 4);
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors", ".complete"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    assert_eq!(download_from(&repo, &cache, &endpoint, None).unwrap(), dir);
    assert_eq!(served.load(Ordering::SeqCst), 4, "a complete download is not fetched again");

    let mut downloaded = LmGenerator::load(&dir, Precision::F32).unwrap();
    assert_eq!(
        downloaded.tokenizer().chat_template().render(&[(coaug_lm::ChatRole::User, "hi")], true).unwrap(),
        "<|im_start|>user: hi<|im_end|><|im_start|>assistant: "
    );
    assert!(downloaded.fingerprint().contains(":chat-"), "a template other than ChatML is part of the key: {}", downloaded.fingerprint());
    let mut local = LmGenerator::load(&served_dir, Precision::F32).unwrap();
    assert_eq!(local.fingerprint(), downloaded.fingerprint(), "the same bytes");
    let request = GenerationRequest { system_prompt: "sys".into(), user_text: "statins and muscle pain".into(), seed: 1 };
    let d = DecodeSettings::greedy(12);
    assert_eq!(downloaded.generate(std::slice::from_ref(&request), &d).unwrap(), local.generate(&[request], &d).unwrap());
}

#[test]
fn a_single_gguf_file_and_missing_files_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let served_dir = tmp.path().join("served");
    std::fs::create_dir_all(&served_dir).unwrap();
    std::fs::write(served_dir.join("m.Q4_K_M.gguf"), b"GGUF bytes").unwrap();
    let (endpoint, _) = serve(served_dir);
    let cache = tmp.path().join("cache");
    let one = HubRepo::parse("org/m-GGUF:m.Q4_K_M.gguf").unwrap();
    let path = download_from(&one, &cache, &endpoint, None).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"GGUF bytes");
    let missing = HubRepo::parse("org/m-GGUF:absent.gguf").unwrap();
    let err = format!("{:#}", download_from(&missing, &cache, &endpoint, None).unwrap_err());
    assert!(err.contains("absent.gguf") && err.contains("404"), "{err}");
    assert!(!cache.join("models/hub/org--m-GGUF/absent.gguf").exists(), "nothing half-written");
    // A folder without config.json fails and is not marked complete.
    let no_config = HubRepo::parse("org/empty").unwrap();
    assert!(download_from(&no_config, &cache, &endpoint, None).is_err());
    assert!(!no_config.local_dir(&cache).join(".complete").exists());
}
