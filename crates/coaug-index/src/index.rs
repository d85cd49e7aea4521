//! The on-disk BM25 index: built with tantivy, searched from memory.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DocAddress, Index, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term};

use crate::analyzer::Analyzer;
use crate::error::{io_err, tantivy_err, IndexError, Result};
use crate::impacts::FieldImpacts;
use crate::manifest::{CorpusHasher, IndexConfig, Manifest, MANIFEST_FILE};
use crate::query::{FieldWeights, WeightedQuery};
use crate::schema::{IndexDoc, IndexSchema, SearchField, ANALYZER_NAME};
use crate::scorer::Bm25Scorer;
use crate::search::{hit_order, keep_top_k, Hit, QueryPlan, Scratch};
use crate::stats::CollectionStats;

/// Indexing memory per writer thread (tantivy needs at least 15 MB).
const WRITER_HEAP_PER_THREAD: usize = 64 << 20;
const MAX_WRITER_THREADS: usize = 8;

/// A BM25 index over a corpus. Documents are addressed by their position in the corpus it was
/// built from ([`Hit::doc`]); [`Bm25Index::doc_id`] gives the id.
pub struct Bm25Index {
    dir: PathBuf,
    manifest: Manifest,
    analyzer: Analyzer,
    schema: IndexSchema,
    searcher: Searcher,
    /// `segment_ords[segment][tantivy doc]` = corpus position.
    segment_ords: Vec<Vec<u32>>,
    /// Corpus position -> tantivy address.
    addresses: Vec<DocAddress>,
    doc_ids: Vec<String>,
    searched: Vec<SearchField>,
    fields: Vec<FieldImpacts>,
    built_now: bool,
}

impl Bm25Index {
    /// Opens the index in `dir` if its manifest matches `docs` and `config`; otherwise
    /// (re)builds it there.
    pub fn open_or_build(dir: &Path, docs: &[IndexDoc], config: &IndexConfig) -> Result<Self> {
        if Self::up_to_date(dir, &Manifest::new(docs, config)) {
            return Self::open(dir);
        }
        Self::build(dir, docs, config)
    }

    /// [`Bm25Index::open_or_build`] for a corpus streamed from disk, in bounded memory: `docs`
    /// is called once to hash the corpus when an index is already there, and once more to build
    /// when it is missing or stale. A million documents never sit in memory together.
    pub fn open_or_build_streaming<I, F>(dir: &Path, docs: F, config: &IndexConfig) -> Result<Self>
    where
        F: Fn() -> I,
        I: Iterator<Item = Result<IndexDoc>>,
    {
        if dir.join(MANIFEST_FILE).exists() {
            let mut hasher = CorpusHasher::default();
            for doc in docs() {
                hasher.add(&doc?);
            }
            if Self::up_to_date(dir, &Manifest::from_hasher(hasher, config)) {
                return Self::open(dir);
            }
        }
        Self::build_streaming(dir, docs(), config)
    }

    /// Whether `dir` holds an index of exactly `wanted` (logging why not, when it holds another).
    fn up_to_date(dir: &Path, wanted: &Manifest) -> bool {
        match Manifest::read(dir) {
            Ok(found) if found.fingerprint == wanted.fingerprint => true,
            Ok(_) => {
                tracing::info!(dir = %dir.display(), "index is stale; rebuilding");
                false
            }
            Err(err) if dir.join(MANIFEST_FILE).exists() => {
                tracing::warn!("{err}; rebuilding the index");
                false
            }
            Err(_) => false,
        }
    }

    /// Builds an index of `docs` in `dir`, replacing a coaug index already there.
    pub fn build(dir: &Path, docs: &[IndexDoc], config: &IndexConfig) -> Result<Self> {
        Self::build_streaming(dir, docs.iter().map(Ok), config)
    }

    /// Builds an index of the documents `docs` yields, one at a time (tantivy's writer buffers a
    /// bounded heap and flushes segments), replacing a coaug index already in `dir`. The manifest
    /// (corpus hash, count) is computed on the way; a repeated id or a read error stops the build
    /// and leaves `dir` as it was. Documents may be owned (read from a file) or borrowed (a slice).
    pub fn build_streaming<D: Borrow<IndexDoc>>(dir: &Path, docs: impl Iterator<Item = Result<D>>, config: &IndexConfig) -> Result<Self> {
        check_replaceable(dir)?;
        let analyzer = Analyzer::new(config.analyzer.clone())?;
        // Build beside the target and move it in at the end, so an interrupted build never
        // leaves a half-written index behind a valid manifest.
        let staging = sibling(dir, &format!("building-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
        }
        std::fs::create_dir_all(&staging).map_err(io_err(&staging))?;
        let manifest = match write_tantivy_index(&staging, docs, config, &analyzer) {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        manifest.write(&staging)?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io_err(dir))?;
        }
        std::fs::rename(&staging, dir).map_err(io_err(dir))?;
        let mut index = Self::open(dir)?;
        index.built_now = true;
        Ok(index)
    }

    /// Opens an index built by [`Bm25Index::build`] and loads its postings into memory.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        let analyzer = Analyzer::new(manifest.config.analyzer.clone())?;
        let schema = IndexSchema::new(&manifest.config.fields);
        let index = Index::open_in_dir(dir).map_err(tantivy_err(dir, "open the index"))?;
        index.tokenizers().register(ANALYZER_NAME, analyzer.tantivy_analyzer());
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(tantivy_err(dir, "open a reader"))?;
        let searcher = reader.searcher();

        let segment_ords = read_segment_ords(dir, &searcher)?;
        let addresses = invert_ords(dir, &segment_ords, manifest.num_docs)?;
        let doc_ids = read_doc_ids(dir, &searcher, &segment_ords, manifest.num_docs)?;
        let searched = manifest.config.fields.searched_fields();
        let fields =
            searched.iter().map(|&f| FieldImpacts::load(dir, &searcher, schema.field(f), &segment_ords)).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            dir: dir.to_owned(),
            manifest,
            analyzer,
            schema,
            searcher,
            segment_ords,
            addresses,
            doc_ids,
            searched,
            fields,
            built_now: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn config(&self) -> &IndexConfig {
        &self.manifest.config
    }

    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    /// Whether this value came from building (rather than reusing) the index.
    pub fn was_built(&self) -> bool {
        self.built_now
    }

    pub fn num_docs(&self) -> usize {
        self.doc_ids.len()
    }

    pub fn doc_id(&self, doc: u32) -> &str {
        &self.doc_ids[doc as usize]
    }

    /// Document ids in corpus order.
    pub fn doc_ids(&self) -> &[String] {
        &self.doc_ids
    }

    /// The stored document at corpus position `doc`.
    pub fn document(&self, doc: u32) -> Result<IndexDoc> {
        let stored: TantivyDocument =
            self.searcher.doc(self.addresses[doc as usize]).map_err(tantivy_err(&self.dir, "read a stored document"))?;
        let text = |field| stored.get_first(field).and_then(|v| v.as_str()).map(str::to_owned);
        Ok(IndexDoc {
            id: self.doc_ids[doc as usize].clone(),
            title: text(self.schema.title).unwrap_or_default(),
            text: text(self.schema.text).unwrap_or_default(),
            augmentation: text(self.schema.augmentation),
        })
    }

    /// Statistics of a searched field (`None` if the field is not searched in this setup).
    pub fn stats(&self, field: SearchField) -> Option<&CollectionStats> {
        let i = self.searched.iter().position(|&f| f == field)?;
        Some(self.fields[i].stats())
    }

    /// A scorer with this index's analyzer and body statistics: it reproduces the index's
    /// body-field scores for any (query, body text) pair.
    pub fn scorer(&self) -> Bm25Scorer {
        let stats = self.stats(SearchField::Body).expect("the body is always searched");
        Bm25Scorer::new(self.analyzer.clone(), stats.clone())
    }

    fn plan(&self, query: &str) -> QueryPlan {
        self.weighted_plan(&self.query(query), FieldWeights::default())
    }

    fn weighted_plan(&self, query: &WeightedQuery, weights: FieldWeights) -> QueryPlan {
        let field_weights: Vec<f32> = (self.searched.iter())
            .map(|f| match f {
                SearchField::Body => 1.0,
                SearchField::Augmentation => weights.augmentation,
            })
            .collect();
        QueryPlan::new(&self.fields, &field_weights, query)
    }

    /// `text` analysed as this index analyses documents, every token with weight 1.
    pub fn query(&self, text: &str) -> WeightedQuery {
        WeightedQuery::from_text(&self.analyzer, text)
    }

    /// The `k` best documents for `query` (OR of its terms), best first.
    pub fn search(&self, query: &str, k: usize) -> Vec<Hit> {
        Scratch::new(self.num_docs()).search(&self.fields, &self.plan(query), k)
    }

    /// [`Bm25Index::search`] for many queries, on the current rayon pool (all cores unless
    /// the caller installed another pool).
    pub fn search_batch<Q: AsRef<str> + Sync>(&self, queries: &[Q], k: usize) -> Vec<Vec<Hit>> {
        queries
            .par_iter()
            .map_init(|| Scratch::new(self.num_docs()), |scratch, q| scratch.search(&self.fields, &self.plan(q.as_ref()), k))
            .collect()
    }

    /// The `k` best documents for each weighted query, with the fields weighted by `weights`
    /// (the augmentation weight matters only when the augmentation has a field of its own).
    pub fn search_weighted(&self, queries: &[WeightedQuery], weights: FieldWeights, k: usize) -> Vec<Vec<Hit>> {
        queries
            .par_iter()
            .map_init(|| Scratch::new(self.num_docs()), |scratch, q| scratch.search(&self.fields, &self.weighted_plan(q, weights), k))
            .collect()
    }

    /// [`Bm25Index::search_batch`] on exactly `threads` threads (1: the calling thread only).
    pub fn search_batch_with_threads<Q: AsRef<str> + Sync>(&self, queries: &[Q], k: usize, threads: usize) -> Result<Vec<Vec<Hit>>> {
        if threads <= 1 {
            let mut scratch = Scratch::new(self.num_docs());
            return Ok(queries.iter().map(|q| scratch.search(&self.fields, &self.plan(q.as_ref()), k)).collect());
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
        Ok(pool.install(|| self.search_batch(queries, k)))
    }

    /// The same search run by tantivy's own query engine (a BooleanQuery of SHOULD term
    /// queries, one per query token, over every searched field). Slower; it exists to check
    /// the in-memory engine and for comparison in benchmarks.
    pub fn search_with_tantivy(&self, query: &str, k: usize) -> Result<Vec<Hit>> {
        let terms = self.analyzer.terms(query);
        let clauses: Vec<(Occur, Box<dyn Query>)> = self
            .searched
            .iter()
            .flat_map(|&f| {
                let field = self.schema.field(f);
                terms.iter().map(move |t| {
                    let term = Term::from_field_text(field, t);
                    let q: Box<dyn Query> = Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
                    (Occur::Should, q)
                })
            })
            .collect();
        if clauses.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let top = self
            .searcher
            .search(&BooleanQuery::new(clauses), &TopDocs::with_limit(k).order_by_score())
            .map_err(tantivy_err(&self.dir, "search"))?;
        let mut hits: Vec<Hit> = top
            .into_iter()
            .map(|(score, addr)| Hit { doc: self.segment_ords[addr.segment_ord as usize][addr.doc_id as usize], score })
            .collect();
        // Tantivy breaks ties by its own doc addresses; use the crate's order.
        hits.sort_unstable_by(hit_order);
        keep_top_k(&mut hits, k);
        Ok(hits)
    }
}

/// Writes every document into a new tantivy index in `dir`; returns the corpus's manifest.
fn write_tantivy_index<D: Borrow<IndexDoc>>(
    dir: &Path,
    docs: impl Iterator<Item = Result<D>>,
    config: &IndexConfig,
    analyzer: &Analyzer,
) -> Result<Manifest> {
    let schema = IndexSchema::new(&config.fields);
    let index = Index::create_in_dir(dir, schema.schema.clone()).map_err(tantivy_err(dir, "create the index"))?;
    index.tokenizers().register(ANALYZER_NAME, analyzer.tantivy_analyzer());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_WRITER_THREADS);
    let mut writer: IndexWriter =
        index.writer_with_num_threads(threads, threads * WRITER_HEAP_PER_THREAD).map_err(tantivy_err(dir, "start the index writer"))?;
    let mut hasher = CorpusHasher::default();
    // Id -> corpus position, to name both documents of a repeated id.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (ord, doc) in docs.enumerate() {
        let doc = doc?;
        let doc = doc.borrow();
        if let Some(first) = seen.insert(doc.id.clone(), ord) {
            return Err(IndexError::DuplicateId { id: doc.id.clone(), first, second: ord });
        }
        hasher.add(doc);
        let mut stored = TantivyDocument::default();
        stored.add_text(schema.id, &doc.id);
        stored.add_u64(schema.ord, ord as u64);
        stored.add_text(schema.title, &doc.title);
        stored.add_text(schema.text, &doc.text);
        stored.add_text(schema.body, doc.body(&config.fields));
        if let Some(augmentation) = &doc.augmentation {
            stored.add_text(schema.augmentation, augmentation);
        }
        writer.add_document(stored).map_err(tantivy_err(dir, "add a document"))?;
    }
    writer.commit().map_err(tantivy_err(dir, "commit"))?;
    writer.wait_merging_threads().map_err(tantivy_err(dir, "finish merging"))?;
    Ok(Manifest::from_hasher(hasher, config))
}

/// A directory may be (re)built into if it does not exist, is empty, or holds a coaug index.
fn check_replaceable(dir: &Path) -> Result<()> {
    if !dir.exists() || dir.join(MANIFEST_FILE).exists() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(dir).map_err(io_err(dir))?;
    match entries.next() {
        None => Ok(()),
        Some(_) => Err(IndexError::NotAnIndex { path: dir.to_owned() }),
    }
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().map_or_else(|| "index".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!(".{name}.{suffix}"))
}

fn read_segment_ords(dir: &Path, searcher: &Searcher) -> Result<Vec<Vec<u32>>> {
    searcher
        .segment_readers()
        .iter()
        .map(|segment| {
            let column = segment.fast_fields().u64(IndexSchema::ORD).map_err(tantivy_err(dir, "read document positions"))?;
            (0..segment.max_doc())
                .map(|doc| {
                    column.first(doc).map(|ord| ord as u32).ok_or_else(|| IndexError::DocCount {
                        path: dir.to_owned(),
                        found: doc as usize,
                        expected: segment.max_doc() as usize,
                    })
                })
                .collect()
        })
        .collect()
}

/// Corpus position -> tantivy address; checks the positions are exactly 0..num_docs.
fn invert_ords(dir: &Path, segment_ords: &[Vec<u32>], num_docs: usize) -> Result<Vec<DocAddress>> {
    let found: usize = segment_ords.iter().map(Vec::len).sum();
    let bad = || IndexError::DocCount { path: dir.to_owned(), found, expected: num_docs };
    if found != num_docs {
        return Err(bad());
    }
    let mut addresses = vec![None; num_docs];
    for (segment, ords) in segment_ords.iter().enumerate() {
        for (doc, &ord) in ords.iter().enumerate() {
            let slot = addresses.get_mut(ord as usize).ok_or_else(bad)?;
            if slot.replace(DocAddress::new(segment as u32, doc as u32)).is_some() {
                return Err(bad());
            }
        }
    }
    Ok(addresses.into_iter().map(|a| a.expect("every position was filled")).collect())
}

fn read_doc_ids(dir: &Path, searcher: &Searcher, segment_ords: &[Vec<u32>], num_docs: usize) -> Result<Vec<String>> {
    let mut ids = vec![String::new(); num_docs];
    for (segment, ords) in searcher.segment_readers().iter().zip(segment_ords) {
        let column = segment
            .fast_fields()
            .str("id")
            .map_err(tantivy_err(dir, "read document ids"))?
            .ok_or_else(|| IndexError::DocCount { path: dir.to_owned(), found: 0, expected: num_docs })?;
        // The dictionary in term order, once (one lookup per document would decode a block each).
        let mut terms = Vec::with_capacity(column.dictionary().num_terms());
        let mut stream = column.dictionary().stream().map_err(io_err(dir))?;
        while stream.advance() {
            terms.push(String::from_utf8_lossy(stream.key()).into_owned());
        }
        for (doc, &ord) in ords.iter().enumerate() {
            let term = column.term_ords(doc as u32).next().and_then(|t| terms.get(t as usize));
            ids[ord as usize] = term.cloned().unwrap_or_default();
        }
    }
    Ok(ids)
}
