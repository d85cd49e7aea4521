//! Composite sampling (docs/method.md §3): a training step's queries and documents, drawn together.
//!
//! A step takes B *groups*; a group is one training query, P of its positive documents, H of its
//! hard negatives (judged, score <= 0), M *mined* negatives (unjudged documents among the plain BM25
//! top-k of the query: lexical distractors, see [`CompositeSampler::with_mined_negatives`]) and R
//! random negatives from the *never-positive pool* (corpus documents that are positive for no
//! training query, so a random negative is never a relevant document in disguise). Every prompt
//! of a group becomes a *slot* of the step.
//!
//! Why mined negatives: against P positives and random negatives alone the query's nDCG@10 is
//! close to 1 whatever it is augmented with (random documents share no terms with it), so most
//! groups teach nothing. A negative that plain BM25 ranks high is one the augmentation has to
//! push down, which is what evaluation on the whole corpus measures.
//!
//! A query with fewer than P positives: by default all of them are taken once and the shortfall
//! is filled with further random negatives (docs/method.md's "better" option, which keeps every
//! group the same size without duplicate prompts); [`PositiveShortfall::RepeatPositives`]
//! repeats positives instead, as the paper does. Too few hard or mined negatives are likewise
//! made up with random negatives.
//!
//! Reproducibility: step `s` depends only on the seed and `s`. Queries are visited epoch by
//! epoch in a seeded permutation (the step's B queries are positions `s·B .. s·B+B` of the
//! concatenated epoch permutations); the documents of step `s` come from their own stream.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use coaug_data::Qrels;
use rand::seq::index;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::advantage::PromptRole;
use crate::error::{setting, Result, RlError};
use crate::gains::SlotGains;
use crate::layout::RolloutLayout;
use crate::seed::{stream, Purpose};

/// How a query with fewer than P positives is completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PositiveShortfall {
    /// Every positive once; the missing ones become random negatives.
    #[default]
    FillWithNegatives,
    /// Every positive once, then positives drawn again with replacement (the paper).
    RepeatPositives,
}

/// Which (query slot, document slot) pairs earn a gain in the reward's nDCG.
///
/// A document can occur in several groups of a step (NFCorpus documents are relevant to many
/// queries). `Qrels` credits the qrels grade of the pair wherever the document sits, so a
/// document relevant to query A is never treated as A's negative because it was drawn for B.
/// `OwnGroup` credits only the documents of the query's own group (the released code), which
/// equals `Qrels` whenever groups share no relevant documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum GainScope {
    #[default]
    Qrels,
    OwnGroup,
}

/// Settings of the composite sampler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompositeConfig {
    /// B, groups per step.
    pub groups_per_step: usize,
    /// P, positive documents per group.
    pub positives: usize,
    /// H, hard negatives (judged, score <= 0) per group.
    pub hard_negatives: usize,
    /// M, mined negatives per group: unjudged documents drawn from the query's plain BM25 top
    /// `mine_depth` (the trainer mines them once, with the run's analyzer).
    pub mined_negatives: usize,
    /// How deep in the plain BM25 ranking mined negatives are drawn from.
    pub mine_depth: usize,
    /// R, random negatives from the never-positive pool per group.
    pub random_negatives: usize,
    pub positive_shortfall: PositiveShortfall,
    pub gain_scope: GainScope,
}

impl Default for CompositeConfig {
    fn default() -> Self {
        Self {
            groups_per_step: 32,
            positives: 5,
            hard_negatives: 0,
            mined_negatives: 0,
            mine_depth: 30,
            random_negatives: 10,
            positive_shortfall: PositiveShortfall::FillWithNegatives,
            gain_scope: GainScope::Qrels,
        }
    }
}

impl CompositeConfig {
    /// Document slots per group: P + H + M + R.
    pub fn documents_per_group(&self) -> usize {
        self.positives + self.hard_negatives + self.mined_negatives + self.random_negatives
    }

    pub fn validate(&self) -> Result<()> {
        if self.groups_per_step == 0 {
            return Err(setting("composite.groups_per_step", 0, "a step needs at least one group"));
        }
        if self.positives == 0 {
            return Err(setting("composite.positives", 0, "a group without positives has no reward"));
        }
        if self.mined_negatives > 0 && self.mine_depth < self.mined_negatives {
            return Err(setting("composite.mine_depth", self.mine_depth, "must be at least composite.mined_negatives"));
        }
        Ok(())
    }
}

/// Why a document slot is in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocRole {
    Positive,
    HardNegative,
    MinedNegative,
    RandomNegative,
}

impl DocRole {
    /// The role that selects the advantage scale (posk for positives, negk otherwise).
    pub fn prompt_role(self) -> PromptRole {
        match self {
            DocRole::Positive => PromptRole::PositiveDocument,
            DocRole::HardNegative | DocRole::MinedNegative | DocRole::RandomNegative => PromptRole::NegativeDocument,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuerySlot {
    pub query_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentSlot {
    pub doc_id: String,
    /// The group (= index of its query slot) the document was drawn for.
    pub group: usize,
    pub role: DocRole,
    /// The qrels grade of the document for its own group's query (0 when unjudged).
    pub grade: i32,
}

/// The prompts of one step: query slot `g` heads group `g`, whose document slots are
/// `group_documents(g)` (contiguous, positives first, then hard, mined and random negatives).
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeBatch {
    pub step: u64,
    pub queries: Vec<QuerySlot>,
    pub documents: Vec<DocumentSlot>,
    documents_per_group: usize,
    gains: SlotGains,
}

impl CompositeBatch {
    pub fn num_groups(&self) -> usize {
        self.queries.len()
    }

    pub fn group_documents(&self, group: usize) -> Range<usize> {
        group * self.documents_per_group..(group + 1) * self.documents_per_group
    }

    /// Gain of every document slot for every query slot (see [`GainScope`]).
    pub fn gains(&self) -> &SlotGains {
        &self.gains
    }

    /// The rollout layout when every prompt is sampled `n` times.
    pub fn layout(&self, n: usize) -> Result<RolloutLayout> {
        RolloutLayout::uniform(self.queries.len(), self.documents.len(), n)
    }

    /// The advantage role of every document slot.
    pub fn document_roles(&self) -> Vec<PromptRole> {
        self.documents.iter().map(|d| d.role.prompt_role()).collect()
    }
}

/// Counts of what the sampler could not use, for the run log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SamplerStats {
    pub train_queries: usize,
    /// Queries of the qrels without a positive document in the corpus.
    pub queries_without_positives: usize,
    /// Judgements naming a document the corpus does not have.
    pub judgements_outside_corpus: usize,
    pub never_positive_pool: usize,
    /// Queries with fewer than M mined negatives (made up with random negatives).
    pub queries_short_of_mined: usize,
}

/// One training query and the documents it can draw.
#[derive(Debug, Clone)]
struct TrainQuery {
    id: String,
    positives: Vec<String>,
    hard_negatives: Vec<String>,
    /// Unjudged documents of the query's plain BM25 top-k, best first.
    mined_negatives: Vec<String>,
}

/// Draws the composite batch of any step; see the module documentation.
#[derive(Debug, Clone)]
pub struct CompositeSampler {
    config: CompositeConfig,
    seed: u64,
    queries: Vec<TrainQuery>,
    never_positive: Vec<String>,
    qrels: Qrels,
    stats: SamplerStats,
}

impl CompositeSampler {
    /// `train_qrels` are the training judgements; `corpus_ids` every document id of the corpus.
    pub fn new<S: AsRef<str>>(
        config: CompositeConfig,
        train_qrels: &Qrels,
        corpus_ids: impl IntoIterator<Item = S>,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        let corpus: BTreeSet<String> = corpus_ids.into_iter().map(|id| id.as_ref().to_owned()).collect();
        let mut stats = SamplerStats::default();
        let mut ever_positive = BTreeSet::new();
        let mut queries = Vec::new();
        for (query_id, judgements) in train_qrels.iter() {
            let query = train_query(query_id, judgements, &corpus, &mut stats);
            ever_positive.extend(query.positives.iter().cloned());
            if query.positives.is_empty() {
                stats.queries_without_positives += 1;
            } else {
                queries.push(query);
            }
        }
        let never_positive: Vec<String> = corpus.difference(&ever_positive).cloned().collect();
        stats.train_queries = queries.len();
        stats.never_positive_pool = never_positive.len();

        if queries.is_empty() {
            return Err(RlError::Data("no training query has a positive document in the corpus".into()));
        }
        // Mined negatives that are missing are made up with random ones: the pool must hold them all.
        let needed = config.documents_per_group();
        if never_positive.len() < needed {
            return Err(RlError::Data(format!(
                "the never-positive pool has {} documents; a group may need {needed} distinct negatives (P + H + R)",
                never_positive.len()
            )));
        }
        Ok(Self { config, seed, queries, never_positive, qrels: train_qrels.clone(), stats })
    }

    pub fn config(&self) -> &CompositeConfig {
        &self.config
    }

    pub fn stats(&self) -> &SamplerStats {
        &self.stats
    }

    /// Adds the mined negatives: `ranked[query id]` is the query's plain BM25 ranking, best
    /// first. Of its first `mine_depth` documents, those the query's judgements do not name (any
    /// grade) and the corpus holds become the query's mined negatives.
    pub fn with_mined_negatives(mut self, ranked: &BTreeMap<String, Vec<String>>) -> Self {
        let depth = self.config.mine_depth;
        let mut short = 0;
        for query in &mut self.queries {
            let judged = self.qrels.get(&query.id);
            query.mined_negatives = ranked
                .get(&query.id)
                .map(|docs| docs.iter().take(depth).filter(|d| !judged.is_some_and(|j| j.contains_key(d.as_str()))).cloned().collect())
                .unwrap_or_default();
            short += usize::from(query.mined_negatives.len() < self.config.mined_negatives);
        }
        self.stats.queries_short_of_mined = short;
        self
    }

    /// The training queries' ids, in the qrels' order.
    pub fn query_ids(&self) -> impl Iterator<Item = &str> {
        self.queries.iter().map(|q| q.id.as_str())
    }

    /// Training queries per B: how many steps one pass over the training queries takes.
    pub fn steps_per_epoch(&self) -> f64 {
        self.queries.len() as f64 / self.config.groups_per_step as f64
    }

    /// The composite batch of step `step` (a pure function of the seed and `step`).
    pub fn batch(&self, step: u64) -> CompositeBatch {
        let per_group = self.config.documents_per_group();
        let query_indices = self.step_queries(step);
        let mut rng = stream(self.seed, Purpose::GroupDocuments, step);
        let mut queries = Vec::with_capacity(query_indices.len());
        let mut documents = Vec::with_capacity(query_indices.len() * per_group);
        for (group, &qi) in query_indices.iter().enumerate() {
            let query = &self.queries[qi];
            queries.push(QuerySlot { query_id: query.id.clone() });
            for (doc_id, role) in self.group_documents(query, &mut rng) {
                let grade = self.qrels.relevance(&query.id, &doc_id);
                documents.push(DocumentSlot { doc_id, group, role, grade });
            }
        }
        let gains = self.slot_gains(&queries, &documents);
        CompositeBatch { step, queries, documents, documents_per_group: per_group, gains }
    }

    /// Indices of the step's B queries in the epoch-by-epoch visiting order.
    fn step_queries(&self, step: u64) -> Vec<usize> {
        let n = self.queries.len() as u64;
        let b = self.config.groups_per_step as u64;
        let mut orders: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        (step * b..(step + 1) * b)
            .map(|position| {
                let order = orders.entry(position / n).or_insert_with_key(|&epoch| self.epoch_order(epoch));
                order[(position % n) as usize]
            })
            .collect()
    }

    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.queries.len()).collect();
        order.shuffle(&mut stream(self.seed, Purpose::EpochOrder, epoch));
        order
    }

    /// The P + H + M + R documents of one group, with their roles, in slot order.
    fn group_documents(&self, query: &TrainQuery, rng: &mut impl Rng) -> Vec<(String, DocRole)> {
        let c = &self.config;
        let mut docs = Vec::with_capacity(c.documents_per_group());
        let mut shortfall = 0;

        let available = query.positives.len();
        if available >= c.positives {
            docs.extend(pick(&query.positives, c.positives, rng).into_iter().map(|d| (d, DocRole::Positive)));
        } else {
            docs.extend(query.positives.iter().map(|d| (d.clone(), DocRole::Positive)));
            let missing = c.positives - available;
            match c.positive_shortfall {
                PositiveShortfall::FillWithNegatives => shortfall += missing,
                PositiveShortfall::RepeatPositives => {
                    docs.extend((0..missing).map(|_| (query.positives[rng.random_range(0..available)].clone(), DocRole::Positive)))
                }
            }
        }

        let hard = c.hard_negatives.min(query.hard_negatives.len());
        let hard_picked = pick(&query.hard_negatives, hard, rng);
        shortfall += c.hard_negatives - hard;

        // Mined negatives are unjudged for this query, so never one of its hard negatives.
        let mined = c.mined_negatives.min(query.mined_negatives.len());
        let mined_picked = pick(&query.mined_negatives, mined, rng);
        shortfall += c.mined_negatives - mined;

        // A hard or mined negative may itself be never-positive: draw spare random negatives so
        // that dropping those duplicates still leaves enough (the pool holds >= P + H + M + R).
        let random = c.random_negatives + shortfall;
        let randoms: Vec<String> = pick(&self.never_positive, random + hard + mined, rng)
            .into_iter()
            .filter(|d| !hard_picked.contains(d) && !mined_picked.contains(d))
            .take(random)
            .collect();
        docs.extend(hard_picked.into_iter().map(|d| (d, DocRole::HardNegative)));
        docs.extend(mined_picked.into_iter().map(|d| (d, DocRole::MinedNegative)));
        docs.extend(randoms.into_iter().map(|d| (d, DocRole::RandomNegative)));
        docs
    }

    fn slot_gains(&self, queries: &[QuerySlot], documents: &[DocumentSlot]) -> SlotGains {
        let mut gains = Vec::with_capacity(queries.len() * documents.len());
        for (group, query) in queries.iter().enumerate() {
            gains.extend(documents.iter().map(|doc| {
                let credited = match self.config.gain_scope {
                    GainScope::Qrels => self.qrels.relevance(&query.query_id, &doc.doc_id),
                    GainScope::OwnGroup if doc.group == group => doc.grade,
                    GainScope::OwnGroup => 0,
                };
                credited.max(0) as f32
            }));
        }
        let query_groups = (0..queries.len()).collect();
        let doc_groups = documents.iter().map(|d| d.group).collect();
        SlotGains::new(query_groups, doc_groups, gains).expect("gains are non-negative grades of the right shape")
    }
}

/// `count` distinct entries of `from`, uniformly (requires `count <= from.len()`).
fn pick(from: &[String], count: usize, rng: &mut impl Rng) -> Vec<String> {
    index::sample(rng, from.len(), count).into_iter().map(|i| from[i].clone()).collect()
}

fn train_query(query_id: &str, judgements: &BTreeMap<String, i32>, corpus: &BTreeSet<String>, stats: &mut SamplerStats) -> TrainQuery {
    let mut positives = Vec::new();
    let mut hard_negatives = Vec::new();
    for (doc_id, &grade) in judgements {
        if !corpus.contains(doc_id) {
            stats.judgements_outside_corpus += 1;
        } else if grade > 0 {
            positives.push(doc_id.clone());
        } else {
            hard_negatives.push(doc_id.clone());
        }
    }
    TrainQuery { id: query_id.to_owned(), positives, hard_negatives, mined_negatives: Vec::new() }
}
