//! The augmentation job against the store, with the fake generator on a real NFCorpus slice.

mod common;

use coaug_augment::fake::KeywordEcho;
use coaug_augment::{
    AugmentItem, AugmentJob, AugmentStore, DecodeSettings, Generation, GenerationRequest, Generator, PromptSet, Retriever, Role,
};
use common::{bad_items, comparable, nfcorpus_slice};

fn doc_job(prompts: &PromptSet, decoding: DecodeSettings, batch_size: usize) -> AugmentJob<'_> {
    let mut job = AugmentJob::new(prompts, Role::Document, Retriever::Sparse, decoding);
    job.batch_size = batch_size;
    job
}

#[test]
fn reruns_generate_only_what_is_missing() {
    let prompts = PromptSet::default();
    let job = doc_job(&prompts, DecodeSettings::greedy(64), 4);
    let items = nfcorpus_slice(30);
    let mut store = AugmentStore::open_in_memory().unwrap();
    let mut generator = KeywordEcho::new();

    let first = job.run(&mut store, &mut generator, &items[..10]).unwrap();
    assert_eq!((first.generated, first.already_stored, first.batches), (10, 0, 3));
    let second = job.run(&mut store, &mut generator, &items).unwrap();
    assert_eq!((second.generated, second.already_stored, second.batches), (20, 10, 5));
    let third = job.run(&mut store, &mut generator, &items).unwrap();
    assert_eq!((third.generated, third.already_stored, third.batches), (0, 30, 0));

    assert_eq!(generator.requests_answered, 30, "each augmentation is generated exactly once");
    assert_eq!(store.len().unwrap(), 30);
    let found = job.lookup(&store, &generator.fingerprint(), &items).unwrap();
    for (item, row) in items.iter().zip(&found) {
        let row = row.as_ref().unwrap_or_else(|| panic!("{} not stored", item.id));
        assert_eq!(row.item_id, item.id);
        assert!(row.format_valid, "{}: {}", item.id, row.raw_response);
        assert!(!row.text.is_empty());
    }
}

#[test]
fn another_model_prompt_or_seed_is_not_served_from_the_store() {
    let prompts = PromptSet::default();
    let items = nfcorpus_slice(5);
    let mut store = AugmentStore::open_in_memory().unwrap();
    let mut generator = KeywordEcho::new();
    doc_job(&prompts, DecodeSettings::sampled(64, 1), 8).run(&mut store, &mut generator, &items).unwrap();

    let other_seed = doc_job(&prompts, DecodeSettings::sampled(64, 2), 8).run(&mut store, &mut generator, &items);
    assert_eq!(other_seed.unwrap().generated, 5);
    let mut dense = doc_job(&prompts, DecodeSettings::sampled(64, 1), 8);
    dense.retriever = Retriever::Dense;
    assert_eq!(dense.run(&mut store, &mut generator, &items).unwrap().generated, 5);
    // Queries with the same text still differ by role and prompt.
    let query_job = AugmentJob::new(&prompts, Role::Query, Retriever::Sparse, DecodeSettings::sampled(64, 1));
    assert_eq!(query_job.run(&mut store, &mut generator, &items).unwrap().generated, 5);
    assert_eq!(store.len().unwrap(), 20);
}

#[test]
fn sampled_rows_do_not_depend_on_batch_size_or_resume_point() {
    let prompts = PromptSet::default();
    let items = nfcorpus_slice(25);
    let decoding = DecodeSettings::sampled(48, 42);

    let mut one_go = AugmentStore::open_in_memory().unwrap();
    doc_job(&prompts, decoding.clone(), 1).run(&mut one_go, &mut KeywordEcho::new(), &items).unwrap();

    let mut pieces = AugmentStore::open_in_memory().unwrap();
    let job = doc_job(&prompts, decoding, 7);
    job.run(&mut pieces, &mut KeywordEcho::new(), &items[13..20]).unwrap();
    job.run(&mut pieces, &mut KeywordEcho::new(), &items).unwrap();

    let (a, b) = (comparable(&one_go), comparable(&pieces));
    assert_eq!(a.len(), 25);
    assert_eq!(a, b);
    // Sampling really happened: some replies were cut off and counted invalid, others not.
    assert!(a.iter().any(|r| r.format_valid) && a.iter().any(|r| !r.format_valid));
}

#[test]
fn identical_inputs_share_one_row() {
    let prompts = PromptSet::default();
    let job = doc_job(&prompts, DecodeSettings::greedy(64), 8);
    let items = vec![
        AugmentItem::new("a", "Green tea and liver health"),
        AugmentItem::new("b", "Green tea and liver health"),
        // Surrounding whitespace does not reach the model, so it is the same input too.
        AugmentItem::new("c", "  Green tea and liver health\n"),
    ];
    let mut store = AugmentStore::open_in_memory().unwrap();
    let mut generator = KeywordEcho::new();
    let report = job.run(&mut store, &mut generator, &items).unwrap();
    assert_eq!((report.unique_inputs, report.generated), (1, 1));
    assert_eq!(generator.requests_answered, 1);
    let found = job.lookup(&store, &generator.fingerprint(), &items).unwrap();
    assert!(found.iter().all(|r| r.as_ref().unwrap().item_id == "a"));
}

#[test]
fn bad_inputs_are_counted_and_never_crash() {
    let prompts = PromptSet::default();
    let mut job = doc_job(&prompts, DecodeSettings::greedy(64), 2);
    job.max_input_tokens = 300;
    let mut items = nfcorpus_slice(3);
    items.extend(bad_items());
    let mut store = AugmentStore::open_in_memory().unwrap();
    let mut generator = KeywordEcho::new();

    let report = job.run(&mut store, &mut generator, &items).unwrap();
    assert_eq!(report.empty, vec!["bad-empty"]);
    assert_eq!(report.no_words, vec!["bad-punct"]);
    assert!(report.truncated.contains(&"bad-long".to_string()));
    assert_eq!(report.replaced_utf8, vec!["bad-utf8"]);
    assert_eq!((report.items, report.unique_inputs, report.generated), (7, 5, 5));
    let summary = report.to_string();
    assert!(summary.contains("empty: 1") && summary.contains("without words: 1"), "{summary}");

    let found = job.lookup(&store, &generator.fingerprint(), &items).unwrap();
    let by_id = |id: &str| found[items.iter().position(|i| i.id == id).unwrap()].clone();
    assert!(by_id("bad-empty").is_none() && by_id("bad-punct").is_none());
    // The fake reports how many distinct words it read: the 100k-character text was cut to
    // 300 tokens = 200 whitespace words.
    assert!(by_id("bad-long").unwrap().raw_response.contains("has 200 distinct long words"));
    assert!(by_id("bad-utf8").unwrap().text.contains("coffee"));
}

/// Answers `ok_batches` batches, then fails.
struct FailingAfter {
    inner: KeywordEcho,
    ok_batches: usize,
}

impl Generator for FailingAfter {
    fn fingerprint(&self) -> String {
        self.inner.fingerprint()
    }

    fn generate(&mut self, requests: &[GenerationRequest], decoding: &DecodeSettings) -> anyhow::Result<Vec<Generation>> {
        anyhow::ensure!(self.ok_batches > 0, "out of memory (simulated)");
        self.ok_batches -= 1;
        self.inner.generate(requests, decoding)
    }
}

#[test]
fn a_failing_batch_keeps_earlier_batches_and_the_rerun_finishes() {
    let prompts = PromptSet::default();
    let job = doc_job(&prompts, DecodeSettings::sampled(64, 3), 4);
    let items = nfcorpus_slice(14);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aug.sqlite");
    {
        let mut store = AugmentStore::open(&path).unwrap();
        let mut failing = FailingAfter { inner: KeywordEcho::new(), ok_batches: 2 };
        let err = format!("{:#}", job.run(&mut store, &mut failing, &items).unwrap_err());
        assert!(err.contains("batch 2 (first item MED-") && err.contains("simulated"), "{err}");
        assert_eq!(store.len().unwrap(), 8);
    }
    let mut store = AugmentStore::open(&path).unwrap();
    let report = job.run(&mut store, &mut KeywordEcho::new(), &items).unwrap();
    assert_eq!((report.already_stored, report.generated), (8, 6));

    let mut reference = AugmentStore::open_in_memory().unwrap();
    job.run(&mut reference, &mut KeywordEcho::new(), &items).unwrap();
    assert_eq!(comparable(&store), comparable(&reference));
}

/// Answers in plain prose, never with tags, like a very small instruct model.
struct Untagged;

impl Generator for Untagged {
    fn fingerprint(&self) -> String {
        "untagged".into()
    }

    fn generate(&mut self, requests: &[GenerationRequest], _: &DecodeSettings) -> anyhow::Result<Vec<Generation>> {
        Ok(requests.iter().map(|_| Generation { text: "soy isoflavones and breast cancer".into(), generated_tokens: 6 }).collect())
    }
}

#[test]
fn lookup_reparses_the_stored_reply_with_the_jobs_policy() {
    let prompts = PromptSet::default();
    let items = nfcorpus_slice(3);
    let mut store = AugmentStore::open_in_memory().unwrap();
    let strict = doc_job(&prompts, DecodeSettings::greedy(64), 8);
    assert_eq!(strict.run(&mut store, &mut Untagged, &items).unwrap().format_invalid, 3);
    for row in strict.lookup(&store, "untagged", &items).unwrap() {
        assert_eq!(row.unwrap().text, "", "strict parsing drops an untagged reply");
    }

    let mut lenient = doc_job(&prompts, DecodeSettings::greedy(64), 8);
    lenient.parse_policy = coaug_augment::ParsePolicy::Lenient;
    assert_eq!(lenient.run(&mut store, &mut Untagged, &items).unwrap().generated, 0, "same key: nothing regenerated");
    for row in lenient.lookup(&store, "untagged", &items).unwrap() {
        let row = row.unwrap();
        assert_eq!(row.text, "soy isoflavones and breast cancer");
        assert!(!row.format_valid);
    }
}
