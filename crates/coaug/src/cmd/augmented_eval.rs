//! `coaug eval --augment …` and `--table`: BM25 or dense retrieval over LM-augmented queries
//! and/or documents (docs/method.md), and the zero-shot table BM25 | +query aug | +doc aug |
//! +both (the first column is "dense" with `--retriever dense`). Given several values of a
//! composition setting, it sweeps them: one row per combination, each compared with plain BM25
//! over the same queries (paired bootstrap).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use coaug_augment::{AugmentStore, Generator, LmGenerator, Retriever};
use coaug_data::{Dataset, Query};
use coaug_dense::{Embeddings, VectorRows};
use coaug_eval::{comparison_table, evaluate, EvalOptions, Metrics, Run, TableStyle};
use coaug_index::AnalyzerConfig;
use coaug_retrieval::table::{paired_vs_plain, sweep, sweep_markdown, to_rank, Column, ColumnIndexes, SweepInput, KS};
use coaug_retrieval::{Augmentations, Composition, DocField, QueryWeight, SampleFusion};

use super::augment::{augment, GenerationArgs, ModelArgs};
use super::dense::{open_dense, RetrieverArgs, RetrieverKind};
use super::retrieval::open_or_build_index;

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
    /// The table column this setting measures.
    fn column(self) -> Column {
        match self {
            AugmentMode::None => Column::Plain,
            AugmentMode::Query => Column::Query,
            AugmentMode::Docs => Column::Docs,
            AugmentMode::Both => Column::Both,
        }
    }
}

/// The rows of the zero-shot table.
const TABLE_KEYS: [&str; 3] = ["NDCG@10", "Recall@100", "MAP@10"];

/// How augmented texts are composed (BM25). Each flag takes several comma-separated values: the
/// command then sweeps every combination.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CompositionArgs {
    /// Weight of the original query's terms against the expansion's: a number (the original
    /// counts that many times: query2doc's `q ×5 + a`; 1 is the method's plain `q ⊕ a`), or
    /// `share:S`, adaptive to the length ratio: the original gets share S of the query's total
    /// term weight, or `terms:C`, adaptive to the query's length too: the whole expansion weighs
    /// as much as C original terms, so an n-term query keeps the share n / (n + C) (never weight
    /// < 1 either way). Default: the project default (docs/results/sweep.md).
    #[arg(long, value_delimiter = ',', value_name = "W|share:S|terms:C")]
    pub query_weight: Vec<QueryWeight>,

    /// Where a document's augmentation is searched: `body` (appended to the text, the method's
    /// `d ⊕ a_d`) or `own:W`, a field of its own with its own BM25 statistics whose score is added
    /// with weight W (`own` = `own:1`).
    #[arg(long, value_delimiter = ',', value_name = "body|own:W")]
    pub doc_field: Vec<DocField>,

    /// How several expansions of a query (--query-samples) are combined: `concat` (one query,
    /// each expansion weighing 1/N) or `rrf` (reciprocal rank fusion of the original query's run
    /// and of each expanded query's run).
    #[arg(long, value_delimiter = ',', value_name = "concat|rrf")]
    pub sample_fusion: Vec<SampleFusion>,
}

impl CompositionArgs {
    /// Every combination of the given values (the default's value where a flag is absent).
    pub fn all(&self) -> Vec<Composition> {
        fn or<T: Copy>(values: &[T], default: T) -> Vec<T> {
            if values.is_empty() {
                vec![default]
            } else {
                values.to_vec()
            }
        }
        let d = Composition::default();
        let mut out = Vec::new();
        for &query_weight in &or(&self.query_weight, d.query_weight) {
            for &doc_field in &or(&self.doc_field, d.doc_field) {
                for &sample_fusion in &or(&self.sample_fusion, d.sample_fusion) {
                    out.push(Composition { query_weight, doc_field, sample_fusion });
                }
            }
        }
        out
    }

    /// The single composition, when one was asked for.
    pub fn one(&self) -> Result<Composition> {
        match self.all().as_slice() {
            [only] => Ok(*only),
            many => bail!("{} compositions given where one is needed: pass one value per composition flag", many.len()),
        }
    }
}

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

    #[command(flatten)]
    pub composition: CompositionArgs,

    #[command(flatten)]
    pub model: ModelArgs,

    /// The LM that writes the document augmentations, if not --model (same forms as --model).
    /// Documents are augmented once, at index time, queries at every search: a larger model
    /// for the queries and a smaller one for the corpus trade quality for indexing time.
    #[arg(long, value_name = "PATH|NAME|ORG/NAME")]
    pub doc_model: Option<String>,

    /// A training checkpoint of `coaug train` (run-dir/checkpoints/step-N.safetensors) applied to
    /// --model: with --table it adds a fifth column, "+both (RL-trained)" (`both_rl`); otherwise
    /// the trained policy writes every augmentation.
    #[arg(long, value_name = "CHECKPOINT")]
    pub policy: Option<PathBuf>,

    #[command(flatten)]
    pub generation: GenerationArgs,
}

impl EvalAugmentArgs {
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
    /// BM25 analyses (stop lists) to evaluate; the first is the one of plain BM25 and of the
    /// query context.
    pub analyzers: &'a [(String, AnalyzerConfig)],
    /// Evaluate only the first N judged queries.
    pub eval_limit: Option<usize>,
}

pub fn run(ctx: EvalContext<'_>, args: &EvalAugmentArgs) -> Result<()> {
    let kind = ctx.retriever.retriever;
    check_retriever(kind, args)?;
    // The LM writes for the retriever that will read it (docs/method.md §2's four prompts).
    let written_for = if kind == RetrieverKind::Dense { Retriever::Dense } else { Retriever::Sparse };
    let mut split = ctx.dataset.load_split(ctx.split)?;
    eprintln!("{}", split.report);
    if let Some(n) = ctx.eval_limit {
        split.keep_first_queries(n);
    }
    // Opened first: a missing encoder should fail before hours of generation, not after.
    let dense = if kind == RetrieverKind::Dense { Some(open_dense(ctx.retriever, ctx.dataset, &split.corpus)?) } else { None };
    let plain = if dense.is_some() { "dense" } else { "BM25" };
    let modes: Vec<Column> = if args.table { Column::ZERO_SHOT.to_vec() } else { vec![args.augment.column()] };
    let need_queries = modes.iter().any(|m| m.sides().0);
    let need_docs = modes.iter().any(|m| m.sides().1);

    let settings = args.generation.settings(written_for)?;
    let mut store = AugmentStore::open(&args.generation.store_path())?;
    let query_limit = args.query_limit.unwrap_or(usize::MAX).min(split.queries.len());
    let doc_limit = args.doc_limit.unwrap_or(usize::MAX).min(split.corpus.len());
    let queries = &split.queries[..query_limit];
    let docs = &split.corpus[..doc_limit];
    // The plain index: the first column, and the passages of --query-context.
    let (plain_name, plain_analyzer) = &ctx.analyzers[0];
    let dataset_name = ctx.dataset.name();
    let indexes = ColumnIndexes {
        root: coaug_data::cache_root().join("indexes"),
        dataset: &dataset_name,
        corpus: &split.corpus,
        plain_dir: ctx.index_dir,
    };
    let plain_dir = indexes.dir(None, &Composition::plain_append(), plain_name);
    let plain_index = open_or_build_index(&plain_dir, &split.corpus, plain_analyzer)?;

    let policy_replaces_base = args.policy.is_some() && !args.table;
    let mut base = Augmentations::default();
    if need_queries || need_docs {
        let mut generator: Box<dyn Generator> = match (&args.policy, policy_replaces_base) {
            (Some(ckpt), true) => {
                Box::new(LmGenerator::load_with_checkpoint(&args.model.path()?, ckpt)?.with_kv_cache(args.model.kv_precision()))
            }
            _ => args.model.load()?,
        };
        let docs_here = need_docs && args.doc_model.is_none();
        base = augment(
            generator.as_mut(),
            &mut store,
            &settings,
            need_queries.then_some(queries),
            docs_here.then_some(docs),
            Some(&plain_index),
        )?;
    }
    if let (Some(doc_model), true) = (&args.doc_model, need_docs) {
        let mut generator = args.model.with_model(doc_model).load()?;
        base.documents = augment(generator.as_mut(), &mut store, &settings, None, Some(docs), None)?.documents;
    }
    let mut trained = None;
    if let (Some(ckpt), true) = (&args.policy, args.table) {
        eprintln!("augmenting with the RL-trained policy {}", ckpt.display());
        let mut generator = LmGenerator::load_with_checkpoint(&args.model.path()?, ckpt)?.with_kv_cache(args.model.kv_precision());
        trained = Some(augment(&mut generator, &mut store, &settings, Some(queries), Some(docs), Some(&plain_index))?);
    }

    let opts = EvalOptions { ignore_identical_ids: ctx.ignore_identical_ids, ..EvalOptions::default() };
    let mut columns: Vec<(Column, &Augmentations)> = modes.iter().map(|m| (*m, &base)).collect();
    if let Some(trained) = &trained {
        columns.push((Column::BothRl, trained));
    }
    let compositions = args.composition.all();
    if dense.is_none() && (compositions.len() > 1 || ctx.analyzers.len() > 1) {
        return run_sweep(&ctx, &indexes, &split.queries, &split.qrels, &columns, &compositions, &opts);
    }
    let composition = args.composition.one()?;

    // Augmented document vectors per augmentation set ("base", "rl"): +doc aug and +both share them.
    let mut dense_docs: HashMap<&'static str, Embeddings> = HashMap::new();
    let mut results: Vec<(Column, Metrics, Run)> = Vec::new();
    for (column, augs) in columns {
        let (aug_queries, aug_docs) = column.sides();
        let to_rank = to_rank(&split.queries, aug_queries.then_some(augs));
        let run = match &dense {
            None => {
                let docs = aug_docs.then_some((augs, column.augmentation_tag()));
                indexes.open(docs, composition, plain_name, plain_analyzer)?.rank(&to_rank, ctx.top_k)
            }
            Some(dense) => {
                let docs: &dyn VectorRows = if aug_docs {
                    let tag = column.augmentation_tag();
                    if !dense_docs.contains_key(tag) {
                        dense_docs.insert(tag, dense.augmented_vectors(&split.corpus, &augs.documents)?);
                    }
                    &dense_docs[tag]
                } else {
                    &dense.store
                };
                dense.retriever(docs, composition).rank(&to_rank, ctx.top_k)?
            }
        };
        let metrics = evaluate(&split.qrels, &run, &KS, &opts);
        eprintln!("{}: nDCG@10 {:.4}", column.label(plain), metrics.mean.get("NDCG@10").copied().unwrap_or(f64::NAN));
        results.push((column, metrics, run));
    }

    let retriever = match &dense {
        Some(_) => format!("{}, document abstracts prepended", super::dense::describe(ctx.retriever, dense.as_ref())),
        None => format!("BM25 ({plain_name} stop words), {composition}"),
    };
    let header = format!(
        "{} / {} ({} queries, {} documents); {retriever}; {}; queries augmented: {}/{}, documents augmented: {}/{}",
        ctx.dataset.name(),
        ctx.split,
        split.queries.len(),
        split.corpus.len(),
        args.generation.describe(&args.model.label()?),
        if need_queries { query_limit } else { 0 },
        split.queries.len(),
        if need_docs { doc_limit } else { 0 },
        split.corpus.len(),
    );
    let header = match &args.doc_model {
        Some(doc_model) => format!("{header}; documents by {}", args.model.with_model(doc_model).label()?),
        None => header,
    };
    let header = match &args.policy {
        Some(ckpt) => format!("{header}; RL-trained policy {}", ckpt.display()),
        None => header,
    };
    let systems: Vec<(&str, &Metrics)> = results.iter().map(|(c, metrics, _)| (c.label(plain), metrics)).collect();
    println!("{header}");
    println!("{}", comparison_table(&systems, &TABLE_KEYS, TableStyle::Plain));
    let noise = paired_lines(&results, plain);
    if !noise.is_empty() {
        println!("{noise}");
    }

    if let Some(out) = ctx.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        if args.table {
            let json: serde_json::Map<String, serde_json::Value> = results
                .iter()
                .map(|(c, metrics, _)| (c.key().to_string(), serde_json::to_value(&metrics.mean).expect("numbers")))
                .collect();
            super::write_json(&out.join("table.json"), &json)?;
            let md = format!("{header}\n\n{}\n\n{noise}\n", comparison_table(&systems, &TABLE_KEYS, TableStyle::Markdown));
            std::fs::write(out.join("table.md"), md).with_context(|| format!("writing {}/table.md", out.display()))?;
            for (c, metrics, run) in &results {
                super::write_json(&out.join(format!("per_query_{}.json", c.key())), &metrics.per_query)?;
                run.write_trec(out.join(format!("run_{}.trec", c.key())), c.key())
                    .with_context(|| format!("writing {}/run_{}.trec", out.display(), c.key()))?;
            }
            eprintln!("wrote {}/table.json, table.md, per-query metrics and runs", out.display());
        } else {
            let (_, metrics, run) = &results[0];
            let tag = format!("coaug-{}-aug", if dense.is_some() { "dense" } else { "bm25" });
            run.write_trec(out.join("run.trec"), &tag).with_context(|| format!("writing {}", out.join("run.trec").display()))?;
            super::write_json(&out.join("metrics.json"), &metrics.mean)?;
            eprintln!("wrote {}/run.trec and metrics.json", out.display());
        }
    }
    Ok(())
}

/// Each augmented column's nDCG@10 against the first (plain) column, paired over queries.
fn paired_lines(results: &[(Column, Metrics, Run)], plain: &'static str) -> String {
    let metrics: Vec<(Column, &Metrics)> = results.iter().map(|(c, m, _)| (*c, m)).collect();
    paired_vs_plain(&metrics)
        .iter()
        .map(|(c, d)| {
            format!("{} − {plain}: nDCG@10 {d} (mean, 95% bootstrap interval over queries; queries better/worse)", c.label(plain))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every combination of stop list and composition on every column, against plain BM25: printed,
/// and written as `sweep.md` and `sweep.json` with `--out`.
fn run_sweep(
    ctx: &EvalContext<'_>,
    indexes: &ColumnIndexes<'_>,
    queries: &[Query],
    qrels: &coaug_data::Qrels,
    columns: &[(Column, &Augmentations)],
    compositions: &[Composition],
    opts: &EvalOptions,
) -> Result<()> {
    let input = SweepInput { queries, qrels, columns, compositions, analyzers: ctx.analyzers, top_k: ctx.top_k, options: opts };
    let rows = sweep(indexes, &input, |row| {
        let line: Vec<String> = row.columns.iter().map(|c| format!("{} {:.4} ({:+.4})", c.column, c.ndcg_at_10, c.delta.mean)).collect();
        match &row.composition {
            Some(c) => eprintln!("{} {c}: {}", row.stop_words, line.join(", ")),
            None => eprintln!("{}: {}", row.stop_words, line.join(", ")),
        }
    })?;
    let md = sweep_markdown(&format!("{} / {} ({} queries)", ctx.dataset.name(), ctx.split, queries.len()), &rows);
    println!("{md}");
    if let Some(out) = ctx.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join("sweep.md"), &md).with_context(|| format!("writing {}/sweep.md", out.display()))?;
        super::write_json(&out.join("sweep.json"), &rows)?;
        eprintln!("wrote {}/sweep.md and sweep.json", out.display());
    }
    Ok(())
}

/// Rejects what augmented evaluation cannot do, before any generation starts.
fn check_retriever(kind: RetrieverKind, args: &EvalAugmentArgs) -> Result<()> {
    if args.doc_model.is_some() && args.policy.is_some() {
        bail!("--doc-model cannot be combined with --policy: the RL-trained policy writes both sides with --model");
    }
    match kind {
        RetrieverKind::Bm25 => Ok(()),
        RetrieverKind::Hybrid => bail!(
            "--retriever hybrid cannot be combined with --augment or --table: augmented hybrid runs are not \
             supported (the sparse and dense prompts write different augmentations); use --retriever bm25 or dense"
        ),
        RetrieverKind::Dense if !args.composition.doc_field.is_empty() || !args.composition.query_weight.is_empty() => {
            bail!("--doc-field and --query-weight are BM25 options; with --retriever dense the document abstract is prepended to the text and the expansion appended to the query")
        }
        RetrieverKind::Dense => Ok(()),
    }
}
