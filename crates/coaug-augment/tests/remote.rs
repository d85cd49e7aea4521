//! The remote backend against a server that misbehaves on purpose
//! (`coaug_augment::remote::fault_server`): dropped connections, 429 with Retry-After, 500s,
//! replies slower than the timeout, malformed JSON, bodies cut short, refused requests and
//! credentials. Every item ends stored exactly once with its own reply, or reported failed and
//! absent from the store; a rerun generates exactly the missing ones.

use std::time::{Duration, Instant};

use coaug_augment::remote::fault_server::{expansion_of, Fault, FaultServer};
use coaug_augment::{
    AugmentItem, AugmentJob, AugmentStore, DecodeSettings, OpenAiConfig, OpenAiGenerator, PromptSet, Retriever, RetryPolicy, Role,
};

fn quick_config(server: &FaultServer) -> OpenAiConfig {
    let mut config = OpenAiConfig::new(server.base_url(), "fault-model");
    config.concurrency = 4;
    config.timeout = Duration::from_millis(400);
    config.retry = RetryPolicy { max_attempts: 5, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(50) };
    config
}

fn items(n: usize) -> Vec<AugmentItem> {
    (0..n).map(|i| AugmentItem::new(format!("d{i}"), format!("item {i} on vitamin d and bone health"))).collect()
}

/// The item number in a user text written by [`items`].
fn number(user_text: &str) -> usize {
    user_text.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(usize::MAX)
}

/// Item `i`'s first attempts fail in the way `i % 8` picks; 6 is refused (400) on every attempt.
fn faults(user_text: &str, attempt: usize) -> Option<Fault> {
    match (number(user_text) % 8, attempt) {
        (0, 1) => Some(Fault::Drop),
        (1, 1) => Some(Fault::TooManyRequests { retry_after_s: 0.0 }),
        (1, 2) | (2, 1..=2) => Some(Fault::Status(500)),
        (3, 1) => Some(Fault::Slow(Duration::from_millis(1500))),
        (4, 1) => Some(Fault::MalformedJson),
        (5, 1..=2) => Some(Fault::TruncatedBody),
        (6, _) => Some(Fault::Status(400)),
        _ => None,
    }
}

#[test]
fn every_item_is_generated_exactly_once_or_reported_failed_and_a_rerun_finishes() {
    let server = FaultServer::start(Box::new(|asked| faults(asked.user_text, asked.attempt))).unwrap();
    let prompts = PromptSet::default();
    let mut job = AugmentJob::new(&prompts, Role::Document, Retriever::Sparse, DecodeSettings::greedy(32));
    job.batch_size = 6;
    let items = items(40);
    let mut store = AugmentStore::open_in_memory().unwrap();
    let mut generator = OpenAiGenerator::new(quick_config(&server)).unwrap();

    let report = job.run(&mut store, &mut generator, &items).unwrap();
    let refused: Vec<&str> = items.iter().filter(|i| number(&i.text) % 8 == 6).map(|i| i.id.as_str()).collect();
    let mut failed: Vec<&str> = report.failed.iter().map(|f| f.id.as_str()).collect();
    failed.sort_by_key(|id| id[1..].parse::<usize>().unwrap());
    assert_eq!(failed, refused, "exactly the refused items fail");
    assert!(report.failed.iter().all(|f| f.reason.contains("HTTP 400")), "{:?}", report.failed);
    assert_eq!(report.generated, items.len() - refused.len());
    assert_eq!(store.len().unwrap(), items.len() - refused.len(), "no row lost or duplicated");

    let rows = job.lookup(&store, &generator_fingerprint(), &items).unwrap();
    for (item, row) in items.iter().zip(&rows) {
        if refused.contains(&item.id.as_str()) {
            assert!(row.is_none(), "{} was refused but stored", item.id);
            assert_eq!(server.asked(&item.text), 1, "a refused request is not retried");
            continue;
        }
        let row = row.as_ref().unwrap_or_else(|| panic!("{} is missing", item.id));
        assert_eq!(row.item_id, item.id);
        assert_eq!(row.text, expansion_of(&item.text), "{}'s reply belongs to it", item.id);
        assert_eq!(server.answered(&item.text), 1, "{} answered once", item.id);
        let expected_attempts = match number(&item.text) % 8 {
            0 | 3 | 4 => 2,
            1 | 2 | 5 => 3,
            _ => 1,
        };
        assert_eq!(server.asked(&item.text), expected_attempts, "{}: attempts", item.id);
    }

    // The server stops refusing: a rerun generates exactly the failed items and nothing else.
    drop(server);
    let healthy = FaultServer::start(Box::new(|_| None)).unwrap();
    let mut generator = OpenAiGenerator::new(quick_config(&healthy)).unwrap();
    let rerun = job.run(&mut store, &mut generator, &items).unwrap();
    assert_eq!((rerun.generated, rerun.already_stored, rerun.failed.len()), (refused.len(), items.len() - refused.len(), 0));
    assert_eq!(healthy.total_asked(), refused.len());
    assert_eq!(store.len().unwrap(), items.len());
}

fn generator_fingerprint() -> String {
    coaug_augment::Generator::fingerprint(&OpenAiGenerator::new(OpenAiConfig::new("http://127.0.0.1:1/v1", "fault-model")).unwrap())
}

#[test]
fn retry_after_is_honoured() {
    let server =
        FaultServer::start(Box::new(|asked| (asked.attempt == 1).then_some(Fault::TooManyRequests { retry_after_s: 1.0 }))).unwrap();
    let mut config = quick_config(&server);
    config.retry.max_delay = Duration::from_secs(5);
    let mut generator = OpenAiGenerator::new(config).unwrap();
    let prompts = PromptSet::default();
    let job = AugmentJob::new(&prompts, Role::Query, Retriever::Sparse, DecodeSettings::greedy(16));
    let started = Instant::now();
    let report = job.run(&mut AugmentStore::open_in_memory().unwrap(), &mut generator, &items(1)).unwrap();
    assert_eq!(report.generated, 1);
    assert!(started.elapsed() >= Duration::from_millis(950), "waited only {:?}", started.elapsed());
}

#[test]
fn a_server_that_stays_down_fails_the_items_and_refused_credentials_stop_the_job() {
    let prompts = PromptSet::default();
    let job = AugmentJob::new(&prompts, Role::Query, Retriever::Sparse, DecodeSettings::greedy(16));

    let down = FaultServer::start(Box::new(|_| Some(Fault::Status(503)))).unwrap();
    let mut generator = OpenAiGenerator::new(quick_config(&down)).unwrap();
    let mut store = AugmentStore::open_in_memory().unwrap();
    let report = job.run(&mut store, &mut generator, &items(3)).unwrap();
    assert_eq!(report.failed.len(), 3);
    assert!(report.failed[0].reason.contains("5 attempts failed") && report.failed[0].reason.contains("503"), "{:?}", report.failed[0]);
    assert_eq!(down.total_asked(), 15);
    assert_eq!(store.len().unwrap(), 0);

    let locked = FaultServer::start(Box::new(|_| Some(Fault::Status(401)))).unwrap();
    let mut config = quick_config(&locked);
    config.api_key = Some("sk-not-printed".into());
    let mut generator = OpenAiGenerator::new(config).unwrap();
    let err = job.run(&mut store, &mut generator, &items(3)).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("refused the credentials"), "{message}");
    assert!(!message.contains("sk-not-printed"));
    assert!(locked.total_asked() <= 4, "a 401 is not retried: {} requests", locked.total_asked());
}

#[test]
fn replies_are_committed_while_a_slow_request_is_still_out() {
    // Item 0's reply takes 2 s (under the 5 s timeout); the 19 others are immediate. The job
    // must not wait for item 0 to commit them: a reader of the store sees 16 rows (4 batches of
    // 4) while the job is still running.
    let server =
        FaultServer::start(Box::new(|asked| (number(asked.user_text) == 0).then_some(Fault::Slow(Duration::from_secs(2))))).unwrap();
    let mut config = quick_config(&server);
    config.timeout = Duration::from_secs(5);
    let mut generator = OpenAiGenerator::new(config).unwrap();
    let prompts = PromptSet::default();
    let mut job = AugmentJob::new(&prompts, Role::Document, Retriever::Sparse, DecodeSettings::greedy(16));
    job.batch_size = 4;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    let mut store = AugmentStore::open(&path).unwrap();
    let running = std::sync::atomic::AtomicBool::new(true);
    let seen_while_running = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut most = 0;
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(reader) = AugmentStore::open(&path) {
                    most = most.max(reader.len().unwrap_or(0));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            most
        });
        let report = job.run(&mut store, &mut generator, &items(20)).unwrap();
        running.store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!((report.generated, report.failed.len()), (20, 0));
        watcher.join().unwrap()
    });
    assert!(seen_while_running >= 16, "only {seen_while_running} rows were committed before the slow reply came");
    assert_eq!(store.len().unwrap(), 20);
}
