//! The search API on loopback: rankings equal `search_hits` on the same index, concurrent
//! queries share LM batches, the store serves repeats, and bad requests get 4xx JSON errors while
//! the server keeps serving.

use std::sync::Arc;
use std::time::Duration;

use coaug_augment::fake::KeywordEcho;
use coaug_augment::{AugmentStore, Generator};
use coaug_index::{Bm25Index, IndexConfig, IndexDoc};
use coaug_retrieval::{search_hits, AugmentSettings, Composition, QueryToRank};
use coaug_serve::{ExpanderConfig, Metrics, QueryExpander, SearchService, ServeConfig};
use serde_json::{json, Value};

const TOPICS: [&str; 6] =
    ["vitamin bone calcium", "statin muscle pain", "green tea cancer", "fish heart omega", "coffee liver enzyme", "sleep memory brain"];

fn corpus() -> Vec<IndexDoc> {
    (0..60)
        .map(|i| IndexDoc {
            id: format!("d{i}"),
            title: format!("title {i}"),
            text: format!("{} study number {i} {}", TOPICS[i % 6], TOPICS[(i / 6) % 6]),
            augmentation: None,
        })
        .collect()
}

struct Running {
    base: String,
    metrics: Arc<Metrics>,
    index_dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

fn start(augment: bool, config: ServeConfig) -> Running {
    let index_dir = tempfile::tempdir().unwrap();
    let index = Bm25Index::build(index_dir.path(), &corpus(), &IndexConfig::default()).unwrap();
    let metrics = Arc::new(Metrics::default());
    let expander = augment.then(|| {
        // Slow enough per batch that concurrent requests queue up behind one another.
        let make = Box::new(|| {
            Ok(Box::new(KeywordEcho { delay_per_batch: Duration::from_millis(150), ..KeywordEcho::new() }) as Box<dyn Generator>)
        });
        let store = AugmentStore::open_in_memory().unwrap();
        let expander_config = ExpanderConfig { max_batch: 16, max_wait: Duration::from_millis(20), max_queued: 64 };
        QueryExpander::start(make, store, AugmentSettings::default(), expander_config, metrics.clone()).unwrap()
    });
    let service = Arc::new(SearchService { index, composition: Composition::default(), expander });
    let router = coaug_serve::router(service, metrics.clone(), config);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(coaug_serve::serve(listener, router, std::future::pending()));
    Running { base, metrics, index_dir, _runtime: runtime }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into()
}

/// POSTs raw bytes to /search: (status, JSON reply).
fn post(base: &str, body: &[u8]) -> (u16, Value) {
    let mut reply = agent().post(&format!("{base}/search")).header("content-type", "application/json").send(body).unwrap();
    let status = reply.status().as_u16();
    let text = reply.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
}

/// POSTs a body of `bytes` over a raw connection and returns the reply's head. The server may
/// answer (and close) before the body is all sent, so write errors are expected and ignored.
fn post_huge(base: &str, bytes: usize) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    let head = format!("POST /search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {bytes}\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'a'; 64 << 10];
    let mut sent = 0;
    while sent < bytes && stream.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    let mut reply = vec![0u8; 256];
    let n = stream.read(&mut reply).unwrap_or(0);
    String::from_utf8_lossy(&reply[..n]).into_owned()
}

#[test]
fn rankings_are_coaugs_and_bad_requests_get_json_errors() {
    let server = start(false, ServeConfig { max_body_bytes: 4096, max_k: 50, ..ServeConfig::default() });
    let (status, reply) = post(&server.base, json!({"query": "statin muscle", "k": 5}).to_string().as_bytes());
    assert_eq!(status, 200, "{reply}");
    let index = Bm25Index::open(server.index_dir.path()).unwrap();
    let expected = search_hits(&index, &Composition::default(), &QueryToRank { id: "q", text: "statin muscle", expansions: &[] }, 5);
    let got: Vec<(&str, f32)> =
        reply["hits"].as_array().unwrap().iter().map(|h| (h["id"].as_str().unwrap(), h["score"].as_f64().unwrap() as f32)).collect();
    let want: Vec<(&str, f32)> = expected.iter().map(|h| (index.doc_id(h.doc), h.score)).collect();
    assert_eq!(got, want);
    assert!(reply["hits"][0]["title"].as_str().unwrap().starts_with("title "));

    let bad: [(&[u8], u16, &str); 9] = [
        (br#"{"query": ""}"#, 400, "empty"),
        (br#"{"query": "   "}"#, 400, "empty"),
        (br#"{"query": "tea", "k": 1000000000}"#, 400, "k must be between 1 and 50"),
        (br#"{"query": "tea", "k": 0}"#, 400, "k must be"),
        (br#"{"query": "tea", "k": -3}"#, 422, "invalid value"),
        (br#"{"query": 7}"#, 422, "invalid type"),
        (br#"{"query": "tea", "colour": 1}"#, 422, "unknown field"),
        (b"{\"query\": \"\xff\xfe\"}", 400, ""),
        (br#"{"query": "#, 400, ""),
    ];
    for (body, status, needle) in bad {
        let (got, reply) = post(&server.base, body);
        assert_eq!(got, status, "{}: {reply}", String::from_utf8_lossy(body));
        assert!(reply["error"].as_str().unwrap().contains(needle), "{reply}");
    }
    assert!(post_huge(&server.base, 10 << 20).starts_with("HTTP/1.1 413"), "a 10 MB body is refused");
    // No augmentation here: asking for it is a client error.
    assert_eq!(post(&server.base, br#"{"query": "tea", "augment": true}"#).0, 400);

    // Still serving, and every reply was counted.
    assert_eq!(post(&server.base, br#"{"query": "coffee"}"#).0, 200);
    let metrics = agent().get(&format!("{}/metrics", server.base)).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(metrics.contains(r#"coaug_http_requests_total{path="/search",status="422"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"coaug_http_requests_total{path="/search",status="200"} 2"#), "{metrics}");
    assert!(metrics.contains("coaug_http_request_duration_seconds_count 13"), "{metrics}");
    let health: Value =
        serde_json::from_str(&agent().get(&format!("{}/health", server.base)).call().unwrap().body_mut().read_to_string().unwrap())
            .unwrap();
    assert_eq!(health, json!({"status": "ok", "documents": 60, "augmentation": false}));
}

#[test]
fn concurrent_queries_share_lm_batches_and_repeats_come_from_the_store() {
    let server = start(true, ServeConfig::default());
    let queries: Vec<String> = (0..24).map(|i| format!("{} question {i}", TOPICS[i % 6])).collect();
    let replies: Vec<(u16, Value)> = std::thread::scope(|s| {
        let server = &server;
        let handles: Vec<_> =
            queries.iter().map(|q| s.spawn(move || post(&server.base, json!({"query": q, "k": 3}).to_string().as_bytes()))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (query, (status, reply)) in queries.iter().zip(&replies) {
        assert_eq!(*status, 200, "{reply}");
        assert_eq!(reply["query"], json!(query));
        // KeywordEcho repeats the query's long words: each reply carries its own query's expansion.
        let expansion = reply["expansions"][0].as_str().unwrap();
        assert!(expansion.contains(query.split_whitespace().next().unwrap()), "{query}: {expansion}");
        assert_eq!(reply["augmented_query"], json!(format!("{query}\n{expansion}")));
    }
    let text = server.metrics.encode();
    assert!(text.contains("coaug_expansions_generated_total 24"), "{text}");
    // 24 requests at once, 150 ms per LM batch: far fewer batches than queries.
    let count = text.lines().find(|l| l.starts_with("coaug_lm_batch_size_count")).unwrap();
    let n: usize = count.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n <= 8, "24 concurrent queries took {n} LM batches");

    // The same query again: served from the store, nothing generated.
    let (status, again) = post(&server.base, json!({"query": queries[0], "k": 3}).to_string().as_bytes());
    assert_eq!(status, 200);
    assert_eq!(again["expansions"], replies[0].1["expansions"]);
    assert!(server.metrics.encode().contains("coaug_expansion_cache_hits_total 1"));
    // Opting out skips the LM.
    let (_, plain) = post(&server.base, br#"{"query": "green tea", "augment": false}"#);
    assert_eq!(plain["expansions"], json!([]));
}
