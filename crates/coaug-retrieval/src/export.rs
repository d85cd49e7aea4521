//! Augmented corpus and queries for other engines.
//!
//! - [`ExportFormat::Beir`]: BEIR JSONL ([`write_corpus_jsonl`], [`write_queries_jsonl`]).
//! - [`ExportFormat::Pyserini`]: Anserini's JsonCollection (`id`, `contents`, `augmentation`) and
//!   the weighted terms of each query ([`LuceneExport`]); `scripts/interop/pyserini_check.py`
//!   rebuilds coaug's BM25 ranking from them in Lucene.
//! - [`ExportFormat::Elasticsearch`]: bulk NDJSON, an index mapping (BM25 k1 = 1.2, b = 0.75, the
//!   augmentation in its own field) and one search body per query (`bool` of `multi_match`es with
//!   field boosts) that scores as coaug does.
//!
//! BEIR: each line carries the final augmented text in `text` with an empty `title`: engines that index
//! `title + text` then see the terms coaug searches (the dense layout puts the augmentation before
//! the title, so the two cannot stay apart). Queries carry their expansions with the original
//! repeated as many times as its weight says (engines without term weights), or, for dense
//! retrieval, appended once. The original title and the augmentation alone travel in `metadata`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use coaug_augment::Retriever;
use coaug_data::{Document, Query};
use coaug_index::Analyzer;
use serde_json::json;

use crate::augmentations::Augmentations;
use crate::composition::Composition;

/// How many exported items had an augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportCounts {
    pub written: usize,
    pub augmented: usize,
}

/// Writes `corpus.jsonl`: every document with its augmentation composed for `retriever`.
pub fn write_corpus_jsonl(
    path: &Path,
    docs: &[Document],
    augs: &Augmentations,
    retriever: Retriever,
    composition: &Composition,
) -> anyhow::Result<ExportCounts> {
    let mut augmented = 0;
    let lines = docs.iter().map(|doc| {
        let aug = augs.document(&doc.id);
        augmented += usize::from(aug.is_some());
        let full = doc.full_text();
        let text = match (retriever, aug) {
            (_, None) => full,
            (Retriever::Dense, Some(a)) => composition.dense_document_text(&full, Some(a)),
            (Retriever::Sparse, Some(a)) if full.is_empty() => a.to_string(),
            (Retriever::Sparse, Some(a)) => format!("{full}\n{a}"),
        };
        json!({"_id": doc.id, "title": "", "text": text, "metadata": {"title": doc.title, "augmentation": aug}})
    });
    let written = write_jsonl(path, lines)?;
    Ok(ExportCounts { written, augmented })
}

/// Writes `queries.jsonl`: every query with its expansions composed for `retriever` (`analyzer`
/// counts terms for the adaptive query weight).
pub fn write_queries_jsonl(
    path: &Path,
    queries: &[Query],
    augs: &Augmentations,
    retriever: Retriever,
    composition: &Composition,
    analyzer: &Analyzer,
) -> anyhow::Result<ExportCounts> {
    let mut augmented = 0;
    let lines = queries.iter().map(|q| {
        let expansions = augs.expansions(&q.id);
        augmented += usize::from(!expansions.is_empty());
        let text = match retriever {
            Retriever::Sparse => composition.repeated_query_text(analyzer, &q.text, expansions),
            Retriever::Dense => composition.query_text(&q.text, expansions),
        };
        json!({"_id": q.id, "text": text, "metadata": {"expansions": expansions}})
    });
    let written = write_jsonl(path, lines)?;
    Ok(ExportCounts { written, augmented })
}

/// The engines an export is written for (`coaug augment --export-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Beir,
    Pyserini,
    Elasticsearch,
}

impl std::str::FromStr for ExportFormat {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "beir" => Ok(Self::Beir),
            "pyserini" | "anserini" => Ok(Self::Pyserini),
            "elasticsearch" | "opensearch" => Ok(Self::Elasticsearch),
            other => anyhow::bail!("unknown export format {other:?}: beir, pyserini or elasticsearch"),
        }
    }
}

/// The Lucene-engine exports (Pyserini/Anserini, Elasticsearch/OpenSearch): the texts coaug
/// indexes, split into the fields coaug searches, and each query's weighted terms.
///
/// coaug's score is `Σ_t w_t · BM25_contents(t, d) + W · Σ_t w_t · BM25_augmentation(t, d)`, each
/// field with its own statistics (k1 = 1.2, b = 0.75); `contents` is `title text` (plus the
/// augmentation with `--doc-field body`), `augmentation` is empty then. With `analyzed`, texts
/// are coaug's analyzed terms joined by spaces, so an engine indexing them with a whitespace
/// analyzer (Anserini's `-pretokenized`) sees exactly coaug's terms; otherwise they are raw text
/// and the engine's own English analysis approximates coaug's.
///
/// One difference stays: Lucene counts a field's documents and average length over the
/// documents that have the field, coaug over all of them; with the augmentation in its own field
/// and some documents without one, the augmentation field's BM25 differs slightly.
pub struct LuceneExport<'a> {
    pub composition: &'a Composition,
    pub analyzer: &'a Analyzer,
    pub analyzed: bool,
}

impl LuceneExport<'_> {
    fn text(&self, raw: &str) -> String {
        if self.analyzed {
            self.analyzer.terms(raw).join(" ")
        } else {
            raw.to_string()
        }
    }

    /// (contents, augmentation) of a document as coaug indexes it.
    fn fields(&self, doc: &Document, augs: &Augmentations) -> (String, String) {
        let indexed = self.composition.index_doc(doc, augs.document(&doc.id));
        let setup = self.composition.field_setup();
        let own = match (setup.augmentation, &indexed.augmentation) {
            (coaug_index::AugmentationPlacement::OwnField, Some(a)) => self.text(a),
            _ => String::new(),
        };
        (self.text(&indexed.body(&setup)), own)
    }

    /// The weight W of the augmentation field (0 when it goes into the body).
    pub fn augmentation_weight(&self) -> f32 {
        self.composition.field_weights().augmentation
    }

    fn query_terms(&self, query: &Query, augs: &Augmentations) -> anyhow::Result<Vec<(String, f64)>> {
        let searched = self.composition.bm25_queries(self.analyzer, &query.text, augs.expansions(&query.id));
        anyhow::ensure!(
            searched.len() == 1,
            "the export holds one weighted query per query: --sample-fusion rrf (several runs fused) cannot be exported"
        );
        Ok(searched[0].terms().iter().map(|(t, w)| (t.clone(), shortest_f64(*w))).collect())
    }

    /// `DIR/pyserini/corpus/docs.jsonl` (Anserini JsonCollection) and `DIR/pyserini/settings.json`.
    pub fn write_pyserini_corpus(&self, dir: &Path, docs: &[Document], augs: &Augmentations) -> anyhow::Result<ExportCounts> {
        let mut augmented = 0;
        let lines = docs.iter().map(|doc| {
            augmented += usize::from(augs.document(&doc.id).is_some());
            let (contents, augmentation) = self.fields(doc, augs);
            json!({"id": doc.id, "contents": contents, "augmentation": augmentation})
        });
        let written = write_jsonl(&dir.join("pyserini").join("corpus").join("docs.jsonl"), lines)?;
        self.write_settings(&dir.join("pyserini"))?;
        Ok(ExportCounts { written, augmented })
    }

    /// `DIR/pyserini/queries.jsonl`: `{"id", "text", "terms": [[term, weight], …]}`.
    pub fn write_pyserini_queries(&self, dir: &Path, queries: &[Query], augs: &Augmentations) -> anyhow::Result<ExportCounts> {
        let mut augmented = 0;
        let mut lines = Vec::with_capacity(queries.len());
        for q in queries {
            let expansions = augs.expansions(&q.id);
            augmented += usize::from(!expansions.is_empty());
            let text = self.text(&self.composition.repeated_query_text(self.analyzer, &q.text, expansions));
            lines.push(json!({"id": q.id, "text": text, "terms": self.query_terms(q, augs)?}));
        }
        let written = write_jsonl(&dir.join("pyserini").join("queries.jsonl"), lines.into_iter())?;
        self.write_settings(&dir.join("pyserini"))?;
        Ok(ExportCounts { written, augmented })
    }

    /// `DIR/elasticsearch/corpus.ndjson` (bulk API lines) and `DIR/elasticsearch/mapping.json`.
    pub fn write_elasticsearch_corpus(
        &self,
        dir: &Path,
        docs: &[Document],
        augs: &Augmentations,
        index_name: &str,
    ) -> anyhow::Result<ExportCounts> {
        let mut augmented = 0;
        let lines = docs.iter().flat_map(|doc| {
            augmented += usize::from(augs.document(&doc.id).is_some());
            let (contents, augmentation) = self.fields(doc, augs);
            [
                json!({"index": {"_index": index_name, "_id": doc.id}}),
                json!({"title": doc.title, "contents": contents, "augmentation": augmentation}),
            ]
        });
        let written = write_jsonl(&dir.join("elasticsearch").join("corpus.ndjson"), lines)? / 2;
        let mapping = serde_json::to_string_pretty(&self.elasticsearch_mapping())?;
        write_atomic(&dir.join("elasticsearch").join("mapping.json"), mapping.as_bytes())?;
        Ok(ExportCounts { written, augmented })
    }

    /// `DIR/elasticsearch/queries.jsonl`: `{"id", "body"}`, `body` being the `_search` request.
    pub fn write_elasticsearch_queries(
        &self,
        dir: &Path,
        queries: &[Query],
        augs: &Augmentations,
        k: usize,
    ) -> anyhow::Result<ExportCounts> {
        let mut augmented = 0;
        let mut lines = Vec::with_capacity(queries.len());
        for q in queries {
            augmented += usize::from(!augs.expansions(&q.id).is_empty());
            lines.push(json!({"id": q.id, "body": self.elasticsearch_query(&self.query_terms(q, augs)?, k)}));
        }
        let written = write_jsonl(&dir.join("elasticsearch").join("queries.jsonl"), lines.into_iter())?;
        Ok(ExportCounts { written, augmented })
    }

    /// One `multi_match` per term, boosted by its weight, over `contents` and (weighted W)
    /// `augmentation`; `most_fields` adds the fields' scores and `bool.should` the terms', as
    /// coaug does. The terms are coaug's analyzed forms: with `analyzed` they match the indexed
    /// terms exactly; on raw text the index analyzer re-analyzes them (a stem of a stem may
    /// differ).
    pub fn elasticsearch_query(&self, terms: &[(String, f64)], k: usize) -> serde_json::Value {
        let w = shortest_f64(self.augmentation_weight());
        let fields: Vec<String> = if w > 0.0 { vec!["contents".into(), format!("augmentation^{w}")] } else { vec!["contents".into()] };
        let should: Vec<serde_json::Value> = terms
            .iter()
            .map(|(term, weight)| json!({"multi_match": {"query": term, "fields": fields, "type": "most_fields", "boost": weight}}))
            .collect();
        json!({"size": k, "query": {"bool": {"should": should}}, "_source": ["title"]})
    }

    /// Settings and mappings for `PUT /INDEX`: BM25 with coaug's k1 and b, and an analyzer
    /// close to coaug's (or whitespace for analyzed texts).
    pub fn elasticsearch_mapping(&self) -> serde_json::Value {
        let analyzer = if self.analyzed {
            json!({"type": "custom", "tokenizer": "whitespace"})
        } else {
            json!({"type": "custom", "tokenizer": "standard", "filter": ["lowercase", "coaug_stop", "coaug_stem"]})
        };
        let stopwords = match &self.analyzer.config().stop_words {
            coaug_index::StopWords::None => json!("_none_"),
            coaug_index::StopWords::Language => json!("_english_"),
            coaug_index::StopWords::Nltk => json!(coaug_index::NLTK_ENGLISH),
            coaug_index::StopWords::Custom(words) => json!(words),
        };
        let text = json!({"type": "text", "analyzer": "coaug", "similarity": "coaug_bm25"});
        json!({
            "settings": {
                "index": {"similarity": {"coaug_bm25": {"type": "BM25", "k1": shortest_f64(coaug_index::K1), "b": shortest_f64(coaug_index::B)}}},
                "analysis": {
                    "analyzer": {"coaug": analyzer},
                    "filter": {
                        "coaug_stop": {"type": "stop", "stopwords": stopwords},
                        // Snowball English (Porter2), as coaug's tantivy stemmer.
                        "coaug_stem": {"type": "stemmer", "language": "porter2"},
                    },
                },
            },
            "mappings": {"properties": {"title": {"type": "text", "index": false}, "contents": text, "augmentation": text}},
        })
    }

    fn write_settings(&self, dir: &Path) -> anyhow::Result<()> {
        let tidy = shortest_f64;
        let settings = json!({
            "aug_weight": tidy(self.augmentation_weight()),
            "k1": tidy(coaug_index::K1),
            "b": tidy(coaug_index::B),
            "mode": if self.analyzed { "pretokenized" } else { "raw" },
            "composition": self.composition.to_string(),
        });
        write_atomic(&dir.join("settings.json"), serde_json::to_string_pretty(&settings)?.as_bytes())
    }
}

/// An f32 as the f64 with its shortest decimal form (0.05, not 0.05000000074505806): the same
/// number to an engine that reads f32, and readable.
fn shortest_f64(x: f32) -> f64 {
    x.to_string().parse().expect("a float prints as a float")
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
}

/// Writes beside the target and renames, so a reader never sees half a file.
fn write_jsonl(path: &Path, lines: impl Iterator<Item = serde_json::Value>) -> anyhow::Result<usize> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("jsonl.partial");
    let mut out = BufWriter::new(File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?);
    let mut written = 0;
    for line in lines {
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        written += 1;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::composition::{DocField, SampleFusion};
    use coaug_index::AnalyzerConfig;

    fn read_lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn fixture() -> (Vec<Document>, Vec<Query>, Augmentations) {
        let docs = vec![
            Document { id: "d1".into(), title: "Bones".into(), text: "Vitamin D helps calcium absorption.".into() },
            Document { id: "d2".into(), title: "".into(), text: "Green tea and cancers".into() },
        ];
        let queries = vec![Query { id: "q1".into(), text: "vitamin bones".into() }];
        let mut augs = Augmentations::default();
        augs.documents.insert("d1".into(), "osteoporosis fractures".into());
        augs.queries.insert("q1".into(), vec!["calcium supplements for bones".into()]);
        (docs, queries, augs)
    }

    #[test]
    fn pyserini_export_holds_coaugs_fields_and_weighted_terms() {
        let (docs, queries, augs) = fixture();
        let analyzer = Analyzer::new(AnalyzerConfig::default()).unwrap();
        let composition = Composition::default();
        let dir = tempfile::tempdir().unwrap();
        let export = LuceneExport { composition: &composition, analyzer: &analyzer, analyzed: true };
        export.write_pyserini_corpus(dir.path(), &docs, &augs).unwrap();
        export.write_pyserini_queries(dir.path(), &queries, &augs).unwrap();

        let corpus = read_lines(&dir.path().join("pyserini/corpus/docs.jsonl"));
        // Own field: the body is title + text, the augmentation apart, both as analyzed terms.
        assert_eq!(corpus[0]["contents"], json!(analyzer.terms("Bones Vitamin D helps calcium absorption.").join(" ")));
        assert_eq!(corpus[0]["augmentation"], json!(analyzer.terms("osteoporosis fractures").join(" ")));
        assert_eq!(corpus[1]["augmentation"], json!(""));
        let expected = composition.bm25_query(&analyzer, "vitamin bones", &["calcium supplements for bones"]);
        let terms: Vec<(String, f64)> =
            serde_json::from_value(read_lines(&dir.path().join("pyserini/queries.jsonl"))[0]["terms"].clone()).unwrap();
        assert_eq!(terms.len(), expected.terms().len());
        for ((t, w), (et, ew)) in terms.iter().zip(expected.terms()) {
            assert_eq!(t, et);
            assert_eq!(*w as f32, *ew, "{t}");
        }
        let settings: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("pyserini/settings.json")).unwrap()).unwrap();
        assert_eq!(settings["aug_weight"], json!(0.05));

        // Body placement: the augmentation joins the contents, the field stays empty; raw text.
        let body = Composition { doc_field: DocField::Body, ..Composition::default() };
        let raw = LuceneExport { composition: &body, analyzer: &analyzer, analyzed: false };
        raw.write_pyserini_corpus(dir.path(), &docs, &augs).unwrap();
        let corpus = read_lines(&dir.path().join("pyserini/corpus/docs.jsonl"));
        assert_eq!(corpus[0]["contents"], json!("Bones Vitamin D helps calcium absorption. osteoporosis fractures"));
        assert_eq!(corpus[0]["augmentation"], json!(""));

        // Several runs fused by RRF are not one Lucene query.
        let rrf = Composition { sample_fusion: SampleFusion::Rrf, ..Composition::default() };
        let export = LuceneExport { composition: &rrf, analyzer: &analyzer, analyzed: true };
        assert!(export.write_pyserini_queries(dir.path(), &queries, &augs).is_err());
    }

    #[test]
    fn elasticsearch_export_boosts_terms_and_the_augmentation_field() {
        let (docs, queries, augs) = fixture();
        // The CLI's default analysis: NLTK's stop list, written into the mapping.
        let analyzer = Analyzer::new(crate::StopList::Nltk.analyzer()).unwrap();
        let composition = Composition::default();
        let dir = tempfile::tempdir().unwrap();
        let export = LuceneExport { composition: &composition, analyzer: &analyzer, analyzed: false };
        assert_eq!(export.write_elasticsearch_corpus(dir.path(), &docs, &augs, "nf").unwrap().written, 2);
        export.write_elasticsearch_queries(dir.path(), &queries, &augs, 100).unwrap();
        let bulk = read_lines(&dir.path().join("elasticsearch/corpus.ndjson"));
        assert_eq!(bulk[0], json!({"index": {"_index": "nf", "_id": "d1"}}));
        assert_eq!(bulk[1]["augmentation"], json!("osteoporosis fractures"));
        let body = &read_lines(&dir.path().join("elasticsearch/queries.jsonl"))[0]["body"];
        assert_eq!(body["size"], json!(100));
        let first = &body["query"]["bool"]["should"][0]["multi_match"];
        assert_eq!(first["fields"], json!(["contents", "augmentation^0.05"]));
        assert_eq!(first["type"], json!("most_fields"));
        let mapping: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("elasticsearch/mapping.json")).unwrap()).unwrap();
        assert_eq!(mapping["settings"]["index"]["similarity"]["coaug_bm25"], json!({"type": "BM25", "k1": 1.2, "b": 0.75}));
        assert_eq!(
            mapping["settings"]["analysis"]["filter"]["coaug_stop"]["stopwords"].as_array().unwrap().len(),
            coaug_index::NLTK_ENGLISH.len()
        );
    }
}
