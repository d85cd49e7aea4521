//! Issue 4's acceptance test: kill the corpus augmentation at a random point twice (SIGKILL, a
//! real process running a tiny random coaug-lm model); the final store equals an uninterrupted
//! run's, with no row lost or duplicated.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coaug_augment::AugmentStore;
use common::{bad_items, comparable, nfcorpus_slice};
use rand::{Rng, SeedableRng};

const BATCH: usize = 4;
const DELAY_MS: u64 = 60;
const SEED: &str = "1234";

fn worker(items: &Path, store: &Path, delay_ms: u64) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_augment-worker"));
    cmd.arg(items).arg(store).arg(BATCH.to_string()).arg(SEED).arg(delay_ms.to_string());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn run_to_end(items: &Path, store: &Path, delay_ms: u64) -> serde_json::Value {
    let out = worker(items, store, delay_ms).output().unwrap();
    assert!(out.status.success(), "worker failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rows(path: &Path) -> usize {
    AugmentStore::open(path).unwrap().len().unwrap()
}

/// Waits until the worker has committed at least `target` rows, lets it run a random part of a
/// batch further, then SIGKILLs it. Returns the rows seen committed just before the kill.
fn kill_after(mut child: Child, store: &Path, target: usize, extra_ms: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < target {
        assert!(Instant::now() < deadline, "worker stalled at {seen} rows");
        assert!(child.try_wait().unwrap().is_none(), "worker finished before the kill point ({seen} rows)");
        if store.exists() {
            seen = rows(store);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(extra_ms));
    assert!(child.try_wait().unwrap().is_none(), "worker finished before it could be killed");
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    seen
}

#[test]
fn killed_twice_then_resumed_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let items_path = dir.path().join("items.jsonl");
    let mut items = nfcorpus_slice(48);
    items.extend(bad_items());
    let lines: Vec<String> = items.iter().map(|i| serde_json::json!({"id": i.id, "text": i.text}).to_string()).collect();
    std::fs::write(&items_path, lines.join("\n")).unwrap();

    let reference_path = dir.path().join("reference.sqlite");
    let reference_report = run_to_end(&items_path, &reference_path, 0);
    let total = reference_report["generated"].as_u64().unwrap() as usize;
    assert_eq!(total, 50, "48 documents plus the long and the UTF-8 ones; empty and punctuation skipped");

    let kill_seed: u64 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(kill_seed);
    let store_path = dir.path().join("interrupted.sqlite");
    let mut committed = 0;
    // Kill points leave at least three batches to go, so the worker is surely still running.
    for limit in [total / 2, total - 3 * BATCH] {
        let target = rng.random_range(committed + 1..=limit);
        let extra_ms = rng.random_range(0..DELAY_MS);
        let child = worker(&items_path, &store_path, DELAY_MS).spawn().unwrap();
        let seen = kill_after(child, &store_path, target, extra_ms);
        let after = rows(&store_path);
        assert!(after >= seen && after < total, "kill seed {kill_seed}: {seen} rows committed before the kill, {after} after");
        assert!(after >= committed, "kill seed {kill_seed}: rows were lost");
        eprintln!("kill seed {kill_seed}: killed after {seen} rows seen (target {target}), {after} committed");
        committed = after;
    }

    let resumed = run_to_end(&items_path, &store_path, 0);
    assert_eq!(resumed["already_stored"].as_u64().unwrap() as usize, committed);
    assert_eq!(resumed["generated"].as_u64().unwrap() as usize, total - committed);

    let reference = comparable(&AugmentStore::open(&reference_path).unwrap());
    let interrupted = comparable(&AugmentStore::open(&store_path).unwrap());
    assert_eq!(interrupted.len(), total, "kill seed {kill_seed}");
    let mut ids: Vec<&str> = interrupted.iter().map(|r| r.item_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "an item has two rows (kill seed {kill_seed})");
    assert!(reference == interrupted, "kill seed {kill_seed}: the resumed store differs from the reference");
}
