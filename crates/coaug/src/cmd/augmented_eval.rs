//! `coaug eval --augment …` and `--table`: BM25 or dense retrieval over LM-augmented queries
//! and/or documents (docs/method.md), and the zero-shot table BM25 | +query aug | +doc aug |
//! +both (the first column is "dense" with `--retriever dense`). Given several values of a
//! composition setting, it sweeps them: one row per combination, each compared with plain BM25
//! over the same queries (paired bootstrap).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use coaug_augment::{AugmentStore, LmGenerator, Retriever};
use coaug_data::{Dataset, Document, Query};
use coaug_dense::Embeddings;
use coaug_eval::{comparison_table, evaluate, paired_bootstrap, EvalOptions, Metrics, PairedDelta, Run, TableStyle, DEFAULT_RESAMPLES};
use coaug_index::AnalyzerConfig;
use coaug_retrieval::{Augmentations, AugmentedBm25, Composition, DocField, QueryToRank, QueryWeight, SampleFusion};

use super::augment::{augment, model_label, GenerationArgs, ModelArgs};
use super::dense::{open_dense, RetrieverArgs, RetrieverKind};
use super::retrieval::{default_index_dir, open_or_build_index, KS};

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
    let modes: Vec<AugmentMode> = if args.table { AugmentMode::ALL.to_vec() } else { vec![args.augment] };
    let need_queries = modes.iter().any(|m| m.queries());
    let need_docs = modes.iter().any(|m| m.docs());

    let settings = args.generation.settings(written_for)?;
    let mut store = AugmentStore::open(&args.generation.store_path())?;
    let query_limit = args.query_limit.unwrap_or(usize::MAX).min(split.queries.len());
    let doc_limit = args.doc_limit.unwrap_or(usize::MAX).min(split.corpus.len());
    let queries = &split.queries[..query_limit];
    let docs = &split.corpus[..doc_limit];
    // The plain index: the first column, and the passages of --query-context.
    let (plain_name, plain_analyzer) = &ctx.analyzers[0];
    let plain_dir = ctx.index_dir.map(Path::to_path_buf).unwrap_or_else(|| default_index_dir(ctx.dataset, plain_name));
    let plain_index = open_or_build_index(&plain_dir, &split.corpus, plain_analyzer)?;

    let policy_replaces_base = args.policy.is_some() && !args.table;
    let mut base = Augmentations::default();
    if need_queries || need_docs {
        let mut generator = match (&args.policy, policy_replaces_base) {
            (Some(ckpt), true) => LmGenerator::load_with_checkpoint(&args.model.path()?, ckpt)?.with_kv_cache(args.model.kv_precision()),
            _ => args.model.load()?,
        };
        let docs_here = need_docs && args.doc_model.is_none();
        base =
            augment(&mut generator, &mut store, &settings, need_queries.then_some(queries), docs_here.then_some(docs), Some(&plain_index))?;
    }
    if let (Some(doc_model), true) = (&args.doc_model, need_docs) {
        let mut generator = args.model.with_model(doc_model).load()?;
        base.documents = augment(&mut generator, &mut store, &settings, None, Some(docs), None)?.documents;
    }
    let mut trained = None;
    if let (Some(ckpt), true) = (&args.policy, args.table) {
        eprintln!("augmenting with the RL-trained policy {}", ckpt.display());
        let mut generator = LmGenerator::load_with_checkpoint(&args.model.path()?, ckpt)?.with_kv_cache(args.model.kv_precision());
        trained = Some(augment(&mut generator, &mut store, &settings, Some(queries), Some(docs), Some(&plain_index))?);
    }

    let opts = EvalOptions { ignore_identical_ids: ctx.ignore_identical_ids, ..EvalOptions::default() };
    let mut columns: Vec<(Column, &Augmentations)> = modes.iter().map(|m| (Column::Mode(*m), &base)).collect();
    if let Some(trained) = &trained {
        columns.push((Column::BothRl, trained));
    }
    let compositions = args.composition.all();
    if dense.is_none() && (compositions.len() > 1 || ctx.analyzers.len() > 1) {
        return sweep(&ctx, &split.corpus, &split.queries, &split.qrels, &columns, &compositions, &opts);
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
                let tag = column.augmentation_tag();
                bm25_for(&ctx, &split.corpus, aug_docs.then_some(augs), composition, plain_name, plain_analyzer, tag)?
                    .rank(&to_rank, ctx.top_k)
            }
            Some(dense) => {
                if aug_docs {
                    let tag = column.augmentation_tag();
                    if !dense_docs.contains_key(tag) {
                        dense_docs.insert(tag, dense.augmented_vectors(&split.corpus, &augs.documents)?);
                    }
                    dense.retriever(&dense_docs[tag], composition).rank(&to_rank, ctx.top_k)?
                } else {
                    dense.retriever(&dense.store, composition).rank(&to_rank, ctx.top_k)?
                }
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
        args.generation.describe(&format!("{} ({} weights)", model_label(&args.model.path()?), args.model.precision)),
        if need_queries { query_limit } else { 0 },
        split.queries.len(),
        if need_docs { doc_limit } else { 0 },
        split.corpus.len(),
    );
    let header = match &args.doc_model {
        Some(doc_model) => format!("{header}; documents by {}", model_label(&args.model.with_model(doc_model).path()?)),
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
            super::eval::write_json(&out.join("table.json"), &json)?;
            let md = format!("{header}\n\n{}\n\n{noise}\n", comparison_table(&systems, &TABLE_KEYS, TableStyle::Markdown));
            std::fs::write(out.join("table.md"), md).with_context(|| format!("writing {}/table.md", out.display()))?;
            for (c, metrics, run) in &results {
                super::eval::write_json(&out.join(format!("per_query_{}.json", c.key())), &metrics.per_query)?;
                run.write_trec(out.join(format!("run_{}.trec", c.key())), c.key())
                    .with_context(|| format!("writing {}/run_{}.trec", out.display(), c.key()))?;
            }
            eprintln!("wrote {}/table.json, table.md, per-query metrics and runs", out.display());
        } else {
            let (_, metrics, run) = &results[0];
            let tag = format!("coaug-{}-aug", if dense.is_some() { "dense" } else { "bm25" });
            run.write_trec(out.join("run.trec"), &tag).with_context(|| format!("writing {}", out.join("run.trec").display()))?;
            super::eval::write_json(&out.join("metrics.json"), &metrics.mean)?;
            eprintln!("wrote {}/run.trec and metrics.json", out.display());
        }
    }
    Ok(())
}

/// Each augmented column's nDCG@10 against the first (plain) column, paired over queries.
fn paired_lines(results: &[(Column, Metrics, Run)], plain: &'static str) -> String {
    let Some((first, base, _)) = results.first().filter(|(c, _, _)| matches!(c, Column::Mode(AugmentMode::None))) else {
        return String::new();
    };
    results[1..]
        .iter()
        .map(|(c, m, _)| {
            let d = paired_bootstrap(base, m, "NDCG@10", DEFAULT_RESAMPLES, 0);
            format!(
                "{} − {}: nDCG@10 {d} (mean, 95% bootstrap interval over queries; queries better/worse)",
                c.label(plain),
                first.label(plain)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The BM25 retriever of a column: the corpus with the column's document augmentations (if any)
/// placed as the composition says, kept in the cache per analysis, placement and augmentation set.
fn bm25_for(
    ctx: &EvalContext<'_>,
    corpus: &[Document],
    augs: Option<&Augmentations>,
    composition: Composition,
    analyzer_name: &str,
    analyzer: &AnalyzerConfig,
    tag: &str,
) -> Result<AugmentedBm25> {
    let none = Augmentations::default();
    let (augs, dir) = match augs {
        Some(augs) => {
            let placement = match composition.doc_field {
                DocField::Body => "body",
                DocField::Own(_) => "own",
            };
            let dir = coaug_data::cache_root()
                .join("indexes")
                .join(format!("{}-augmented-{tag}-{placement}-{analyzer_name}", ctx.dataset.name()).to_lowercase());
            (augs, dir)
        }
        None => {
            // The plain corpus: the composition's placement changes nothing without augmentations,
            // but an own-field index must have the field, so it gets its own folder.
            let dir = match (composition.doc_field, ctx.index_dir) {
                (DocField::Body, Some(dir)) => dir.to_path_buf(),
                (DocField::Body, None) => default_index_dir(ctx.dataset, analyzer_name),
                (DocField::Own(_), _) => {
                    coaug_data::cache_root().join("indexes").join(format!("{}-own-{analyzer_name}", ctx.dataset.name()))
                }
            };
            (&none, dir)
        }
    };
    AugmentedBm25::open_or_build(&dir, corpus, augs, composition, analyzer)
}

/// The queries to rank, with their expansions when the column augments queries.
fn to_rank<'a>(queries: &'a [Query], augs: Option<&'a Augmentations>) -> Vec<QueryToRank<'a>> {
    queries.iter().map(|q| QueryToRank { id: &q.id, text: &q.text, expansions: augs.map_or(&[], |a| a.expansions(&q.id)) }).collect()
}

/// One row of a sweep: a stop list and composition, the nDCG@10 of each column and its paired
/// difference from plain BM25 with the same stop list.
#[derive(serde::Serialize)]
struct SweepRow {
    stop_words: String,
    composition: Option<Composition>,
    columns: Vec<SweepCell>,
}

#[derive(serde::Serialize)]
struct SweepCell {
    column: &'static str,
    ndcg_at_10: f64,
    recall_at_100: f64,
    /// Against plain BM25 with the same stop list (for the plain rows: against the first stop list).
    delta: PairedDelta,
}

/// Every combination of stop list and composition on every column, against plain BM25.
fn sweep(
    ctx: &EvalContext<'_>,
    corpus: &[Document],
    queries: &[Query],
    qrels: &coaug_data::Qrels,
    columns: &[(Column, &Augmentations)],
    compositions: &[Composition],
    opts: &EvalOptions,
) -> Result<()> {
    let augmented: Vec<&(Column, &Augmentations)> = columns.iter().filter(|(c, _)| c.sides() != (false, false)).collect();
    let mut rows: Vec<SweepRow> = Vec::new();
    let mut first_plain: Option<Metrics> = None;
    for (name, analyzer) in ctx.analyzers {
        let plain_retriever = bm25_for(ctx, corpus, None, Composition::default(), name, analyzer, "plain")?;
        let plain = evaluate(qrels, &plain_retriever.rank(&to_rank(queries, None), ctx.top_k), &KS, opts);
        let reference = first_plain.get_or_insert_with(|| plain.clone());
        rows.push(SweepRow { stop_words: name.clone(), composition: None, columns: vec![cell("BM25", &plain, reference)] });
        // One index per document placement and augmentation set; weights vary at search time.
        let mut indexes: HashMap<(String, &'static str), AugmentedBm25> = HashMap::new();
        for &composition in compositions {
            let mut cells = Vec::new();
            for (column, augs) in &augmented {
                let (aug_queries, aug_docs) = column.sides();
                let placement = match composition.doc_field {
                    DocField::Body => "body",
                    DocField::Own(_) => "own",
                };
                let key = (format!("{}-{}", column.augmentation_tag(), if aug_docs { placement } else { "none" }), placement);
                if !indexes.contains_key(&key) {
                    let built = bm25_for(ctx, corpus, aug_docs.then_some(*augs), composition, name, analyzer, column.augmentation_tag())?;
                    indexes.insert(key.clone(), built);
                }
                let run = indexes[&key].with_composition(composition)?.rank(&to_rank(queries, aug_queries.then_some(*augs)), ctx.top_k);
                let metrics = evaluate(qrels, &run, &KS, opts);
                cells.push(cell(column.label("BM25"), &metrics, &plain));
            }
            let line: Vec<String> = cells.iter().map(|c| format!("{} {:.4} ({:+.4})", c.column, c.ndcg_at_10, c.delta.mean)).collect();
            eprintln!("{name} {composition}: {}", line.join(", "));
            rows.push(SweepRow { stop_words: name.clone(), composition: Some(composition), columns: cells });
        }
    }
    let md = sweep_markdown(ctx, queries.len(), &rows);
    println!("{md}");
    if let Some(out) = ctx.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join("sweep.md"), &md).with_context(|| format!("writing {}/sweep.md", out.display()))?;
        super::eval::write_json(&out.join("sweep.json"), &rows)?;
        eprintln!("wrote {}/sweep.md and sweep.json", out.display());
    }
    Ok(())
}

fn cell(column: &'static str, metrics: &Metrics, reference: &Metrics) -> SweepCell {
    SweepCell {
        column,
        ndcg_at_10: metrics.mean.get("NDCG@10").copied().unwrap_or(0.0),
        recall_at_100: metrics.mean.get("Recall@100").copied().unwrap_or(0.0),
        delta: paired_bootstrap(reference, metrics, "NDCG@10", DEFAULT_RESAMPLES, 0),
    }
}

fn sweep_markdown(ctx: &EvalContext<'_>, num_queries: usize, rows: &[SweepRow]) -> String {
    let mut md = format!(
        "{} / {} ({num_queries} queries): nDCG@10, and in brackets its paired difference from plain BM25 with the same \
         stop words (mean [95% bootstrap interval])\n\n",
        ctx.dataset.name(),
        ctx.split
    );
    let columns: Vec<&str> = rows.iter().find(|r| r.composition.is_some()).map_or(vec![], |r| r.columns.iter().map(|c| c.column).collect());
    md.push_str(&format!("| stop words | query weight | doc field | samples | BM25 | {} |\n", columns.join(" | ")));
    md.push_str(&format!("|{}\n", "---|".repeat(5 + columns.len())));
    for row in rows {
        let cells: Vec<String> = row
            .columns
            .iter()
            .map(|c| format!("{:.4} ({:+.4} [{:+.4}, {:+.4}])", c.ndcg_at_10, c.delta.mean, c.delta.low, c.delta.high))
            .collect();
        match &row.composition {
            None => md.push_str(&format!("| {} | – | – | – | {} |{}\n", row.stop_words, cells[0], " |".repeat(columns.len()))),
            Some(c) => md.push_str(&format!(
                "| {} | {} | {} | {} | | {} |\n",
                row.stop_words,
                c.query_weight,
                c.doc_field,
                c.sample_fusion,
                cells.join(" | ")
            )),
        }
    }
    md
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
