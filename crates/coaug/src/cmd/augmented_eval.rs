//! `coaug eval --augment …` and `--table`: BM25 or dense retrieval over LM-augmented queries
//! and/or documents (method.md §6), and the zero-shot table BM25 | +query aug | +doc aug | +both
//! (the first column is "dense" with `--retriever dense`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use coaug_augment::{augmented_text, AugmentItem, AugmentStore, Composition, LmGenerator, Retriever, Role};
use coaug_data::{Dataset, Document, Query};
use coaug_dense::Embeddings;
use coaug_eval::{comparison_table, evaluate, EvalOptions, Metrics, Run, TableStyle};
use coaug_index::{AugmentationPlacement, Bm25Index, FieldSetup, IndexConfig, IndexDoc};

use super::augment::{augment, model_label, print_report, GenerationArgs, ModelArgs};
use super::dense::{DenseIndex, RetrieverArgs, RetrieverKind};
use super::retrieval::{default_index_dir, hits_to_run, open_or_build_index, KS};

/// Which side the LM augments.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AugmentMode {
    /// The plain retriever.
    None,
    /// Queries expanded at search time.
    Query,
    /// Documents augmented at index time.
    Docs,
    /// Both.
    Both,
}

impl AugmentMode {
    const ALL: [AugmentMode; 4] = [AugmentMode::None, AugmentMode::Query, AugmentMode::Docs, AugmentMode::Both];

    fn queries(self) -> bool {
        matches!(self, AugmentMode::Query | AugmentMode::Both)
    }

    fn docs(self) -> bool {
        matches!(self, AugmentMode::Docs | AugmentMode::Both)
    }

    /// The key in `table.json`.
    fn key(self) -> &'static str {
        match self {
            AugmentMode::None => "none",
            AugmentMode::Query => "query",
            AugmentMode::Docs => "docs",
            AugmentMode::Both => "both",
        }
    }

    /// The column label; `plain` names the retriever without augmentation ("BM25", "dense").
    fn column(self, plain: &'static str) -> &'static str {
        match self {
            AugmentMode::None => plain,
            AugmentMode::Query => "+query aug",
            AugmentMode::Docs => "+doc aug",
            AugmentMode::Both => "+both",
        }
    }
}

/// Where a document's augmentation is indexed (BM25 only: dense prepends it to the text).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Appended to the document's text: one field (method.md §2's `d ⊕ a_d`).
    Body,
    /// A field of its own with its own BM25 statistics, scores summed.
    OwnField,
}

/// The rows of the zero-shot table.
const TABLE_KEYS: [&str; 3] = ["NDCG@10", "Recall@100", "MAP@10"];

/// Augmentation flags of `coaug eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalAugmentArgs {
    /// Augment queries (at search time), documents (at index time), both, or none. Missing
    /// augmentations are generated (greedy, repetition penalty 1.2) and kept in the store.
    /// With --retriever dense the LM gets the dense prompts (query expansion appended, a
    /// document abstract prepended); --retriever hybrid cannot be augmented.
    #[arg(long, value_enum, default_value = "none")]
    pub augment: AugmentMode,

    /// Run all four settings and print BM25 (or dense) | +query aug | +doc aug | +both
    /// (nDCG@10, Recall@100, MAP@10); with --out, also `table.json` and `table.md`.
    #[arg(long)]
    pub table: bool,

    /// Quick mode: augment only the first N corpus documents; the others are indexed as they are.
    #[arg(long, value_name = "N")]
    pub doc_limit: Option<usize>,

    /// Quick mode: augment only the first N judged queries; the others are searched as they are.
    #[arg(long, value_name = "N")]
    pub query_limit: Option<usize>,

    /// Where document augmentations are indexed (BM25 only). Default `own-field`: on NFCorpus
    /// (SmolLM2-135M, 300 documents augmented) it gave +doc aug 0.3199 / +both 0.1822 nDCG@10
    /// against 0.3188 / 0.1490 for `body`.
    #[arg(long, value_enum)]
    pub placement: Option<Placement>,

    #[command(flatten)]
    pub model: ModelArgs,

    /// A training checkpoint of `coaug train` (run-dir/checkpoints/step-N.safetensors) applied to
    /// --model: with --table it adds a fifth column, "+both (RL-trained)" (`both_rl`); otherwise
    /// the trained policy writes every augmentation.
    #[arg(long, value_name = "CHECKPOINT")]
    pub policy: Option<PathBuf>,

    #[command(flatten)]
    pub generation: GenerationArgs,
}

impl EvalAugmentArgs {
    /// BM25's document placement: own field unless asked otherwise.
    pub fn placement(&self) -> Placement {
        self.placement.unwrap_or(Placement::OwnField)
    }

    /// Whether `eval` must take this path instead of plain BM25.
    pub fn is_active(&self) -> bool {
        self.table || self.augment != AugmentMode::None
    }
}

/// The plain settings of `eval` this path needs too.
pub struct EvalContext<'a> {
    pub dataset: &'a Dataset,
    pub split: &'a str,
    pub top_k: usize,
    pub ignore_identical_ids: bool,
    pub out: Option<&'a Path>,
    pub index_dir: Option<&'a Path>,
    pub retriever: &'a RetrieverArgs,
}

pub fn run(ctx: EvalContext<'_>, args: &EvalAugmentArgs) -> Result<()> {
    let kind = ctx.retriever.retriever;
    check_retriever(kind, args)?;
    // The LM writes for the retriever that will read it (method.md §2's four prompts).
    let written_for = if kind == RetrieverKind::Dense { Retriever::Dense } else { Retriever::Sparse };
    let split = ctx.dataset.load_split(ctx.split)?;
    eprintln!("{}", split.report);
    // Opened first: a missing encoder should fail before hours of generation, not after.
    let dense = if kind == RetrieverKind::Dense { Some(DenseIndex::open(ctx.retriever, ctx.dataset, &split.corpus)?) } else { None };
    let plain = if dense.is_some() { "dense" } else { "BM25" };
    let modes: Vec<AugmentMode> = if args.table { AugmentMode::ALL.to_vec() } else { vec![args.augment] };
    let need_queries = modes.iter().any(|m| m.queries());
    let need_docs = modes.iter().any(|m| m.docs());

    let prompts = args.generation.prompt_set()?;
    let mut store = AugmentStore::open(&args.generation.store_path())?;
    let query_limit = args.query_limit.unwrap_or(usize::MAX).min(split.queries.len());
    let doc_limit = args.doc_limit.unwrap_or(usize::MAX).min(split.corpus.len());
    let queries = &split.queries[..query_limit];
    let docs = &split.corpus[..doc_limit];

    let policy_replaces_base = args.policy.is_some() && !args.table;
    let mut base = Augmentations::default();
    if need_queries || need_docs {
        let mut generator = match (&args.policy, policy_replaces_base) {
            (Some(ckpt), true) => LmGenerator::load_with_checkpoint(&args.model.path()?, ckpt)?.with_kv_cache(args.model.kv_precision()),
            _ => args.model.load()?,
        };
        let sides = Sides { retriever: written_for, queries: need_queries, docs: need_docs };
        base = Augmentations::generate(&mut generator, &mut store, &prompts, &args.generation, queries, docs, sides)?;
    }
    let mut trained = None;
    if let (Some(ckpt), true) = (&args.policy, args.table) {
        eprintln!("augmenting with the RL-trained policy {}", ckpt.display());
        let mut generator = LmGenerator::load_with_checkpoint(&args.model.path()?, ckpt)?.with_kv_cache(args.model.kv_precision());
        let sides = Sides { retriever: written_for, queries: true, docs: true };
        trained = Some(Augmentations::generate(&mut generator, &mut store, &prompts, &args.generation, queries, docs, sides)?);
    }

    let opts = EvalOptions { ignore_identical_ids: ctx.ignore_identical_ids, ..EvalOptions::default() };
    let mut columns: Vec<(Column, &Augmentations)> = modes.iter().map(|m| (Column::Mode(*m), &base)).collect();
    if let Some(trained) = &trained {
        columns.push((Column::BothRl, trained));
    }
    // Augmented document vectors per augmentation set ("base", "rl"): +doc aug and +both share them.
    let mut dense_docs: HashMap<&'static str, Embeddings> = HashMap::new();
    let mut results: Vec<(Column, Metrics, Run)> = Vec::new();
    for (column, augs) in columns {
        let run = match &dense {
            None => bm25_run(&ctx, args, &split.corpus, &split.queries, column, augs)?,
            Some(dense) => {
                let (aug_queries, aug_docs) = column.sides();
                let texts = query_texts(&split.queries, if aug_queries { Some(&augs.queries) } else { None }, Retriever::Dense);
                if aug_docs {
                    let tag = column.augmentation_tag();
                    if !dense_docs.contains_key(tag) {
                        dense_docs.insert(tag, dense.augmented_vectors(&split.corpus, &augs.docs)?);
                    }
                    dense.run(&split.queries, &texts, &dense_docs[tag], ctx.top_k)?
                } else {
                    dense.run(&split.queries, &texts, &dense.store, ctx.top_k)?
                }
            }
        };
        let metrics = evaluate(&split.qrels, &run, &KS, &opts);
        eprintln!("{}: nDCG@10 {:.4}", column.label(plain), metrics.mean.get("NDCG@10").copied().unwrap_or(f64::NAN));
        results.push((column, metrics, run));
    }

    let retriever = match &dense {
        Some(_) => format!("{}, document abstracts prepended", super::dense::describe(ctx.retriever, dense.as_ref())),
        None => format!("BM25, placement {:?}", args.placement()),
    };
    let header = format!(
        "{} / {} ({} queries, {} documents); {retriever}; {}; queries augmented: {}/{}, documents augmented: {}/{}",
        ctx.dataset.name(),
        ctx.split,
        split.queries.len(),
        split.corpus.len(),
        args.generation.describe(&format!("{} ({} weights)", model_label(&args.model.path()?), args.model.precision)),
        if need_queries { query_limit } else { 0 },
        split.queries.len(),
        if need_docs { doc_limit } else { 0 },
        split.corpus.len(),
    );
    let header = match &args.policy {
        Some(ckpt) => format!("{header}; RL-trained policy {}", ckpt.display()),
        None => header,
    };
    let systems: Vec<(&str, &Metrics)> = results.iter().map(|(c, metrics, _)| (c.label(plain), metrics)).collect();
    println!("{header}");
    println!("{}", comparison_table(&systems, &TABLE_KEYS, TableStyle::Plain));

    if let Some(out) = ctx.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        if args.table {
            let json: serde_json::Map<String, serde_json::Value> = results
                .iter()
                .map(|(c, metrics, _)| (c.key().to_string(), serde_json::to_value(&metrics.mean).expect("numbers")))
                .collect();
            super::eval::write_json(&out.join("table.json"), &json)?;
            let md = format!("{header}\n\n{}\n", comparison_table(&systems, &TABLE_KEYS, TableStyle::Markdown));
            std::fs::write(out.join("table.md"), md).with_context(|| format!("writing {}/table.md", out.display()))?;
            eprintln!("wrote {}/table.json and table.md", out.display());
        } else {
            let (_, metrics, run) = &results[0];
            let tag = format!("{}-aug", super::eval::run_tag(kind));
            run.write_trec(out.join("run.trec"), &tag)
                .with_context(|| format!("writing {}", out.join("run.trec").display()))?;
            super::eval::write_json(&out.join("metrics.json"), &metrics.mean)?;
            eprintln!("wrote {}/run.trec and metrics.json", out.display());
        }
    }
    Ok(())
}

/// A column of the table: one of the four settings, or both sides augmented by the trained policy.
#[derive(Debug, Clone, Copy)]
enum Column {
    Mode(AugmentMode),
    BothRl,
}

impl Column {
    /// (queries augmented, documents augmented).
    fn sides(self) -> (bool, bool) {
        match self {
            Column::Mode(m) => (m.queries(), m.docs()),
            Column::BothRl => (true, true),
        }
    }

    fn key(self) -> &'static str {
        match self {
            Column::Mode(m) => m.key(),
            Column::BothRl => "both_rl",
        }
    }

    fn label(self, plain: &'static str) -> &'static str {
        match self {
            Column::Mode(m) => m.column(plain),
            Column::BothRl => "+both (RL-trained)",
        }
    }

    /// Which model's augmentations the column's documents carry (cache key of the augmented index).
    fn augmentation_tag(self) -> &'static str {
        match self {
            Column::Mode(_) => "base",
            Column::BothRl => "rl",
        }
    }
}

/// Rejects what augmented evaluation cannot do, before any generation starts.
fn check_retriever(kind: RetrieverKind, args: &EvalAugmentArgs) -> Result<()> {
    match kind {
        RetrieverKind::Bm25 => Ok(()),
        RetrieverKind::Hybrid => bail!(
            "--retriever hybrid cannot be combined with --augment or --table: augmented hybrid runs are not \
             supported (the sparse and dense prompts write different augmentations); use --retriever bm25 or dense"
        ),
        RetrieverKind::Dense if args.placement.is_some_and(|p| p != Placement::Body) => {
            bail!("--placement own-field is a BM25 option; with --retriever dense the document abstract is prepended to the text")
        }
        RetrieverKind::Dense => Ok(()),
    }
}

/// The BM25 run of one column: the plain index, or the index of the corpus with the
/// column's document augmentations (kept in the cache per placement and augmentation set).
fn bm25_run(
    ctx: &EvalContext<'_>,
    args: &EvalAugmentArgs,
    corpus: &[Document],
    queries: &[Query],
    column: Column,
    augs: &Augmentations,
) -> Result<Run> {
    let (aug_queries, aug_docs) = column.sides();
    let index = if aug_docs {
        augmented_index(ctx.dataset, corpus, &augs.docs, args.placement(), column.augmentation_tag())?
    } else {
        let dir = ctx.index_dir.map(Path::to_path_buf).unwrap_or_else(|| default_index_dir(ctx.dataset));
        open_or_build_index(&dir, corpus, &IndexConfig::default())?
    };
    let texts = query_texts(queries, if aug_queries { Some(&augs.queries) } else { None }, Retriever::Sparse);
    let hits = index.search_batch(&texts, ctx.top_k);
    Ok(hits_to_run(&index, queries, &hits))
}

/// Which sides to augment, and for which retriever's prompts.
#[derive(Debug, Clone, Copy)]
struct Sides {
    retriever: Retriever,
    queries: bool,
    docs: bool,
}

/// One model's augmentations of the evaluated queries and documents, by id (non-empty only).
#[derive(Default)]
struct Augmentations {
    queries: HashMap<String, String>,
    docs: HashMap<String, String>,
}

impl Augmentations {
    fn generate(
        generator: &mut LmGenerator,
        store: &mut AugmentStore,
        prompts: &coaug_augment::PromptSet,
        settings: &GenerationArgs,
        queries: &[Query],
        docs: &[Document],
        sides: Sides,
    ) -> Result<Self> {
        let mut out = Self::default();
        if sides.queries {
            let items = AugmentItem::from_queries(queries);
            let (report, found) = augment(generator, store, prompts, settings, Role::Query, sides.retriever, &items)?;
            print_report("queries", &report);
            out.queries = collect(&items, found);
        }
        if sides.docs {
            let items = AugmentItem::from_documents(docs);
            let (report, found) = augment(generator, store, prompts, settings, Role::Document, sides.retriever, &items)?;
            print_report("documents", &report);
            out.docs = collect(&items, found);
        }
        Ok(out)
    }
}

/// Item id -> non-empty augmentation.
fn collect(items: &[AugmentItem], found: Vec<Option<coaug_augment::StoredAugmentation>>) -> HashMap<String, String> {
    items
        .iter()
        .zip(found)
        .filter_map(|(item, aug)| aug.filter(|a| !a.text.trim().is_empty()).map(|a| (item.id.clone(), a.text)))
        .collect()
}

/// The searched text of every query: `q + "\n" + a_q` where an augmentation exists (both
/// retrievers append the query expansion).
pub fn query_texts(queries: &[Query], augmentations: Option<&HashMap<String, String>>, retriever: Retriever) -> Vec<String> {
    queries
        .iter()
        .map(|q| match augmentations.and_then(|a| a.get(&q.id)) {
            Some(a) => augmented_text(&q.text, a, Role::Query, retriever, Composition::Full),
            None => q.text.clone(),
        })
        .collect()
}

/// The BM25 index of the corpus with augmentations; kept in the cache per placement and
/// rebuilt when the augmentations change (the manifest fingerprints the indexed texts).
fn augmented_index(
    dataset: &Dataset,
    corpus: &[Document],
    augmentations: &HashMap<String, String>,
    placement: Placement,
    tag: &str,
) -> Result<Bm25Index> {
    let docs: Vec<IndexDoc> = corpus
        .iter()
        .map(|d| IndexDoc { augmentation: augmentations.get(&d.id).cloned(), ..IndexDoc::from(d) })
        .collect();
    let augmentation = match placement {
        Placement::Body => AugmentationPlacement::Body,
        Placement::OwnField => AugmentationPlacement::OwnField,
    };
    let config = IndexConfig { fields: FieldSetup { augmentation }, ..IndexConfig::default() };
    let dir: PathBuf =
        crate::paths::cache_root().join("indexes").join(format!("{}-augmented-{tag}-{placement:?}", dataset.name()).to_lowercase());
    Bm25Index::open_or_build(&dir, &docs, &config).with_context(|| format!("building the augmented index in {}", dir.display()))
}
