//! Resolution and the downloader, against a tiny HTTP server on 127.0.0.1 serving zips built
//! here from a slice of the shared NFCorpus.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Cursor, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coaug_data::{install_dataset, known_md5, shared_beir_dir, DataDirOrigin, DataError, DatasetSource, Resolver};
use md5::{Digest, Md5};
use zip::write::SimpleFileOptions;

/// How the server answers one path.
#[derive(Clone)]
enum Reply {
    Body(Vec<u8>),
    /// Announces the full length, sends half, hangs up.
    CutShort(Vec<u8>),
}

struct Server {
    base_url: String,
    requests: Arc<AtomicUsize>,
}

impl Server {
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Serves `routes` until the test process exits; unknown paths get 404.
fn serve(routes: Vec<(&str, Reply)>) -> Server {
    let routes: HashMap<String, Reply> = routes.into_iter().map(|(p, r)| (p.to_owned(), r)).collect();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = answer(stream, &routes);
        }
    });
    Server { base_url, requests }
}

fn answer(mut stream: TcpStream, routes: &HashMap<String, Reply>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let head = |status: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Type: application/zip\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    match routes.get(path) {
        Some(Reply::Body(body)) => {
            stream.write_all(head("200 OK", body.len()).as_bytes())?;
            stream.write_all(body)?;
        }
        Some(Reply::CutShort(body)) => {
            stream.write_all(head("200 OK", body.len()).as_bytes())?;
            stream.write_all(&body[..body.len() / 2])?;
        }
        None => stream.write_all(head("404 Not Found", 0).as_bytes())?,
    }
    stream.flush()
}

/// A zip in BEIR's layout (`<top>/corpus.jsonl`, ...) holding the first 60 test judgements of
/// NFCorpus with the queries and documents they name.
fn slice_zip(top: &str) -> Vec<u8> {
    let source = shared_beir_dir().join("nfcorpus");
    let qrels = fs::read_to_string(source.join("qrels/test.tsv")).unwrap();
    let qrels: Vec<&str> = qrels.lines().take(61).collect();
    let ids = |column: usize| -> BTreeSet<String> { qrels[1..].iter().map(|l| l.split('\t').nth(column).unwrap().to_owned()).collect() };
    let keep = |file: &str, wanted: BTreeSet<String>| -> String {
        let text = fs::read_to_string(source.join(file)).unwrap();
        text.lines()
            .filter(|l| {
                let id = serde_json::from_str::<serde_json::Value>(l).unwrap()["_id"].as_str().unwrap().to_owned();
                wanted.contains(&id)
            })
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let files = [
        (format!("{top}/corpus.jsonl"), keep("corpus.jsonl", ids(1))),
        (format!("{top}/queries.jsonl"), keep("queries.jsonl", ids(0))),
        (format!("{top}/qrels/test.tsv"), qrels.join("\r\n") + "\r\n"),
    ];
    zip_of(&files)
}

fn zip_of(files: &[(String, String)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, contents) in files {
        zip.start_file(name.as_str(), SimpleFileOptions::default()).unwrap();
        zip.write_all(contents.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

fn resolver(cache: &Path, server: &Server) -> Resolver {
    Resolver { data_dir: None, cache_dir: cache.to_path_buf(), base_url: server.base_url.clone(), show_progress: false }
}

/// Everything in the cache directory, temporaries included.
fn cache_entries(cache: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(cache) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn downloads_into_the_cache_once() {
    let server = serve(vec![("/mini.zip", Reply::Body(slice_zip("mini")))]);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("datasets");
    let resolver = resolver(&cache_dir, &server);

    let dataset = resolver.resolve("mini").unwrap();
    assert_eq!(dataset.root(), cache_dir.join("mini"));
    let split = dataset.load_split("test").unwrap();
    assert!(split.report.is_clean(), "{}", split.report);
    assert_eq!(split.report.judgements, 60);
    assert_eq!(split.qrels.relevance("PLAIN-2", "MED-2427"), 2);
    assert_eq!(cache_entries(&cache_dir), ["mini"], "no temporaries left");

    resolver.resolve("mini").unwrap();
    assert_eq!(server.requests(), 1, "a cached dataset is not fetched again");
}

#[test]
fn a_verified_download_installs() {
    let zip = slice_zip("mini");
    let server = serve(vec![("/mini.zip", Reply::Body(zip.clone()))]);
    let cache = tempfile::tempdir().unwrap();
    let digest = md5_hex(&zip).to_uppercase();
    let source = DatasetSource { name: "mini", url: format!("{}/mini.zip", server.base_url), md5: Some(&digest) };
    let dataset = install_dataset(&source, cache.path(), false).unwrap();
    assert_eq!(dataset.splits(), ["test"]);
}

#[test]
fn md5_mismatch_is_rejected_and_leaves_nothing() {
    // Our slice is not the published nfcorpus.zip, so the known digest must reject it.
    let server = serve(vec![("/nfcorpus.zip", Reply::Body(slice_zip("nfcorpus")))]);
    let cache = tempfile::tempdir().unwrap();
    let err = resolver(cache.path(), &server).resolve("nfcorpus").unwrap_err();
    match &err {
        DataError::ChecksumMismatch { expected, actual, .. } => {
            assert_eq!(Some(expected.as_str()), known_md5("nfcorpus"));
            assert_ne!(actual, expected);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("nfcorpus.zip: md5 mismatch"), "{err}");
    assert_eq!(cache_entries(cache.path()), Vec::<String>::new());
    // Nothing was cached, so asking again fetches (and fails) again.
    assert!(resolver(cache.path(), &server).resolve("nfcorpus").is_err());
    assert_eq!(server.requests(), 2);
}

#[test]
fn scifact_is_not_verified() {
    assert_eq!(known_md5("scifact"), None);
    let server = serve(vec![("/scifact.zip", Reply::Body(slice_zip("scifact")))]);
    let cache = tempfile::tempdir().unwrap();
    assert!(resolver(cache.path(), &server).resolve("scifact").is_ok());
}

#[test]
fn an_interrupted_download_leaves_nothing() {
    let server = serve(vec![("/mini.zip", Reply::CutShort(slice_zip("mini")))]);
    let cache = tempfile::tempdir().unwrap();
    let err = resolver(cache.path(), &server).resolve("mini").unwrap_err();
    assert!(matches!(err, DataError::Download { .. }), "{err:?}");
    assert_eq!(cache_entries(cache.path()), Vec::<String>::new());
}

#[test]
fn a_missing_file_on_the_server_is_a_clear_error() {
    let server = serve(vec![]);
    let cache = tempfile::tempdir().unwrap();
    let err = resolver(cache.path(), &server).resolve("nope").unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&format!("{}/nope.zip", server.base_url)) && message.contains("404"), "{message}");
    assert_eq!(cache_entries(cache.path()), Vec::<String>::new());
}

#[test]
fn a_zip_without_a_dataset_is_rejected() {
    let junk = zip_of(&[("mini/readme.txt".to_owned(), "hello".to_owned())]);
    let server = serve(vec![("/mini.zip", Reply::Body(junk)), ("/garbage.zip", Reply::Body(b"not a zip".to_vec()))]);
    let cache = tempfile::tempdir().unwrap();
    let err = resolver(cache.path(), &server).resolve("mini").unwrap_err();
    assert!(err.to_string().contains("does not hold a BEIR dataset"), "{err}");
    let err = resolver(cache.path(), &server).resolve("garbage").unwrap_err();
    assert!(err.to_string().contains("not a readable zip"), "{err}");
    assert_eq!(cache_entries(cache.path()), Vec::<String>::new());
}

#[test]
fn stale_temporaries_are_cleaned_and_fresh_ones_kept() {
    let server = serve(vec![("/mini.zip", Reply::Body(slice_zip("mini")))]);
    let cache = tempfile::tempdir().unwrap();
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let stale_file = cache.path().join(".coaug-mini-dead.zip.part");
    File::create(&stale_file).unwrap().set_modified(hour_ago).unwrap();
    let stale_dir = cache.path().join(".coaug-mini-dead");
    fs::create_dir_all(stale_dir.join("mini")).unwrap();
    fs::write(stale_dir.join("mini/corpus.jsonl"), "{}").unwrap();
    File::open(&stale_dir).unwrap().set_modified(hour_ago).unwrap();
    fs::write(cache.path().join(".coaug-other-live.zip.part"), "in progress").unwrap();

    resolver(cache.path(), &server).resolve("mini").unwrap();
    assert_eq!(cache_entries(cache.path()), [".coaug-other-live.zip.part", "mini"]);
}

#[test]
fn an_explicit_data_dir_is_the_only_place_searched() {
    let server = serve(vec![("/scifact.zip", Reply::Body(slice_zip("scifact")))]);
    let cache = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    for origin in [DataDirOrigin::Argument, DataDirOrigin::Environment] {
        let resolver = Resolver { data_dir: Some((data_dir.path().to_path_buf(), origin)), ..resolver(cache.path(), &server) };
        let err = resolver.resolve("scifact").unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, DataError::DatasetNotFound { .. }), "{message}");
        assert!(message.contains(&data_dir.path().display().to_string()), "{message}");
        assert!(message.contains(&origin.to_string()), "{message}");
    }
    assert_eq!(server.requests(), 0, "nothing downloaded");
    assert_eq!(cache_entries(cache.path()), Vec::<String>::new());
}

#[test]
fn an_explicit_data_dir_finds_the_dataset() {
    let resolver = Resolver {
        data_dir: Some((shared_beir_dir(), DataDirOrigin::Argument)),
        cache_dir: PathBuf::from("/nonexistent/cache"),
        base_url: "http://127.0.0.1:1".to_owned(),
        show_progress: false,
    };
    let dataset = resolver.resolve("scifact").unwrap();
    assert_eq!(dataset.name(), "scifact");
    assert_eq!(dataset.splits(), ["test", "train"]);
}

#[test]
fn a_broken_cached_dataset_is_reported_not_replaced() {
    let server = serve(vec![("/mini.zip", Reply::Body(slice_zip("mini")))]);
    let cache = tempfile::tempdir().unwrap();
    fs::create_dir_all(cache.path().join("mini")).unwrap();
    let err = resolver(cache.path(), &server).resolve("mini").unwrap_err();
    assert!(matches!(err, DataError::NotADataset { .. }), "{err:?}");
    assert_eq!(server.requests(), 0);
}

#[test]
fn names_that_are_not_one_plain_path_component_are_rejected() {
    let server = serve(vec![]);
    let cache = tempfile::tempdir().unwrap();
    for name in ["", "../etc", "a/b", ".hidden", "sp ace"] {
        let err = resolver(cache.path(), &server).resolve(name).unwrap_err();
        assert!(matches!(err, DataError::InvalidName { .. }), "{name}: {err:?}");
    }
    assert_eq!(server.requests(), 0);
}
