//! How an augmented query and an augmented document are formed for retrieval: the one definition
//! that `coaug eval`, `coaug search`, the exports, the RL reward and RL validation all use.
//!
//! The method's sparse form is `q ⊕ a_q` and `d ⊕ a_d` (docs/method.md). Appended once, a
//! 60-token expansion outweighs a 4-word query, and even a good expansion then hurts; query2doc
//! repeats the query five times, MuGI sets the repeats from the length ratio. Here the original
//! query's terms get a weight ([`QueryWeight`]) against the expansion's, and a document's
//! augmentation is searched in the body or in a field of its own with its own weight
//! ([`DocField`]).

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context};
use coaug_index::{Analyzer, AugmentationPlacement, FieldSetup, FieldWeights, IndexDoc, WeightedQuery};
use serde::{Deserialize, Serialize};

/// The weight of the original query's terms; every expansion term weighs `1 / samples`.
/// Written as on the command line (`5`, `share:0.6`) in configs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum QueryWeight {
    /// A fixed weight: `q ×w + a` (query2doc: 5; the method's plain `q ⊕ a`: 1).
    Fixed(f32),
    /// Adaptive to the length ratio: the original terms get this share of the query's total
    /// weight (never less than weight 1). A 4-term query with a 40-term expansion at share 0.5
    /// weighs 10; with a 12-term expansion, 3.
    Share(f32),
    /// Adaptive to the query's length as well: the whole expansion weighs as much as this many
    /// original terms, so an original of n terms keeps the share n / (n + C) (never less than
    /// weight 1). At C = 3 a 3-term query keeps half of the weight, like `share:0.5`, while a
    /// 12-term claim keeps 0.8: long queries say most of what they need, and a small model's
    /// expansion mostly adds noise to them.
    Terms(f32),
}

impl QueryWeight {
    /// The weight of each original term, given the original's and the expansions' term masses.
    pub fn original_weight(self, original_mass: f32, expansion_mass: f32) -> f32 {
        match self {
            QueryWeight::Fixed(w) => w,
            QueryWeight::Share(_) if original_mass <= 0.0 || expansion_mass <= 0.0 => 1.0,
            QueryWeight::Share(s) => (s / (1.0 - s) * expansion_mass / original_mass).max(1.0),
            QueryWeight::Terms(_) if expansion_mass <= 0.0 => 1.0,
            QueryWeight::Terms(c) => (expansion_mass / c).max(1.0),
        }
    }
}

impl fmt::Display for QueryWeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryWeight::Fixed(w) => write!(f, "{w}"),
            QueryWeight::Share(s) => write!(f, "share:{s}"),
            QueryWeight::Terms(c) => write!(f, "terms:{c}"),
        }
    }
}

impl FromStr for QueryWeight {
    type Err = anyhow::Error;

    /// `5` (fixed), `share:0.5` or `terms:3` (adaptive).
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        if let Some(terms) = s.strip_prefix("terms:") {
            let terms: f32 = terms.parse().with_context(|| format!("query weight {s:?}: the term count is not a number"))?;
            if !(terms.is_finite() && terms > 0.0) {
                bail!("query weight {s:?}: the expansion's weight in original terms must be a finite number > 0");
            }
            return Ok(QueryWeight::Terms(terms));
        }
        if let Some(share) = s.strip_prefix("share:") {
            let share: f32 = share.parse().with_context(|| format!("query weight {s:?}: the share is not a number"))?;
            if !(share > 0.0 && share < 1.0) {
                bail!("query weight {s:?}: the share must lie strictly between 0 and 1");
            }
            return Ok(QueryWeight::Share(share));
        }
        let w: f32 = s.parse().with_context(|| {
            format!("query weight {s:?}: expected a number (e.g. 5), share:S (e.g. share:0.5) or terms:C (e.g. terms:3)")
        })?;
        if !(w.is_finite() && w >= 0.0) {
            bail!("query weight {s:?} must be a finite number ≥ 0");
        }
        Ok(QueryWeight::Fixed(w))
    }
}

/// Where BM25 searches a document's augmentation. Written as on the command line (`body`,
/// `own:0.5`) in configs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DocField {
    /// Appended to the document's text: one field, one set of statistics (`d ⊕ a_d`).
    Body,
    /// A field of its own with its own statistics; its BM25 is added with this weight.
    Own(f32),
}

impl DocField {
    pub fn placement(self) -> AugmentationPlacement {
        match self {
            DocField::Body => AugmentationPlacement::Body,
            DocField::Own(_) => AugmentationPlacement::OwnField,
        }
    }

    pub fn field_weights(self) -> FieldWeights {
        match self {
            DocField::Body => FieldWeights::default(),
            DocField::Own(w) => FieldWeights { augmentation: w },
        }
    }
}

impl fmt::Display for DocField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocField::Body => f.write_str("body"),
            DocField::Own(w) => write!(f, "own:{w}"),
        }
    }
}

impl FromStr for DocField {
    type Err = anyhow::Error;

    /// `body`, `own` (weight 1) or `own:W`.
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim() {
            "body" => Ok(DocField::Body),
            "own" | "own-field" => Ok(DocField::Own(1.0)),
            other => {
                let Some(w) = other.strip_prefix("own:") else {
                    bail!("document field {other:?}: expected body, own or own:W (e.g. own:0.5)");
                };
                let w: f32 = w.parse().with_context(|| format!("document field {other:?}: the weight is not a number"))?;
                if !(w.is_finite() && w >= 0.0) {
                    bail!("document field {other:?}: the weight must be a finite number ≥ 0");
                }
                Ok(DocField::Own(w))
            }
        }
    }
}

/// How several expansions of one query (`--query-samples N`) become one ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SampleFusion {
    /// One query: the original and every expansion, each expansion weighing `1 / N`.
    #[default]
    Concat,
    /// Reciprocal rank fusion of the runs of the original query alone and of the original with
    /// each expansion.
    Rrf,
}

impl fmt::Display for SampleFusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SampleFusion::Concat => "concat",
            SampleFusion::Rrf => "rrf",
        })
    }
}

impl FromStr for SampleFusion {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim() {
            "concat" => Ok(SampleFusion::Concat),
            "rrf" => Ok(SampleFusion::Rrf),
            other => bail!("sample fusion {other:?}: expected concat or rrf"),
        }
    }
}

macro_rules! string_forms {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = anyhow::Error;
            fn try_from(s: String) -> anyhow::Result<Self> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }
    )*};
}
string_forms!(QueryWeight, DocField);

/// How augmented texts are formed. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Composition {
    pub query_weight: QueryWeight,
    pub doc_field: DocField,
    pub sample_fusion: SampleFusion,
}

impl Default for Composition {
    /// Chosen on NFCorpus dev and SciFact train queries (docs/results/sweep.md).
    fn default() -> Self {
        Self { query_weight: QueryWeight::Share(0.9), doc_field: DocField::Own(0.05), sample_fusion: SampleFusion::Concat }
    }
}

impl fmt::Display for Composition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "query weight {}, document augmentation in {}, samples by {}", self.query_weight, self.doc_field, self.sample_fusion)
    }
}

impl Composition {
    /// The method's unweighted `q ⊕ a_q`, `d ⊕ a_d` (the ablation that drowns the query).
    pub fn plain_append() -> Self {
        Self { query_weight: QueryWeight::Fixed(1.0), doc_field: DocField::Body, sample_fusion: SampleFusion::Concat }
    }

    /// The BM25 query of `original` expanded by `expansions` (none: the original alone, every
    /// term weight 1, whatever the query weight).
    pub fn bm25_query<S: AsRef<str>>(&self, analyzer: &Analyzer, original: &str, expansions: &[S]) -> WeightedQuery {
        let mut expansion = WeightedQuery::new();
        let per_sample = 1.0 / expansions.len().max(1) as f32;
        for e in expansions {
            expansion.add_text(analyzer, e.as_ref(), per_sample);
        }
        let base = WeightedQuery::from_text(analyzer, original);
        if expansion.is_empty() {
            return base;
        }
        let w = self.query_weight.original_weight(base.total_weight(), expansion.total_weight());
        let mut query = WeightedQuery::new();
        for (term, weight) in base.terms() {
            query.add_term(term, w * weight);
        }
        for (term, weight) in expansion.terms() {
            query.add_term(term, *weight);
        }
        query
    }

    /// The BM25 queries whose runs make one query's ranking: one with every expansion
    /// ([`SampleFusion::Concat`]), or the original alone and the original with each expansion,
    /// to be fused by RRF ([`SampleFusion::Rrf`], with at least one expansion).
    pub fn bm25_queries<S: AsRef<str>>(&self, analyzer: &Analyzer, original: &str, expansions: &[S]) -> Vec<WeightedQuery> {
        match self.sample_fusion {
            SampleFusion::Rrf if !expansions.is_empty() => std::iter::once(WeightedQuery::from_text(analyzer, original))
                .chain(expansions.iter().map(|e| self.bm25_query(analyzer, original, std::slice::from_ref(e))))
                .collect(),
            _ => vec![self.bm25_query(analyzer, original, expansions)],
        }
    }

    /// The searched query as one text, for engines that take text (dense encoders; exports): the
    /// original, then the expansions, one per line. BM25 inside coaug weighs terms instead
    /// ([`Self::bm25_query`]); [`Self::repeated_query_text`] approximates that with text.
    pub fn query_text<S: AsRef<str>>(&self, original: &str, expansions: &[S]) -> String {
        let mut text = original.to_string();
        for e in expansions.iter().map(|e| e.as_ref().trim()).filter(|e| !e.is_empty()) {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(e);
        }
        text
    }

    /// [`Self::bm25_query`] as text for an engine without term weights (Lucene's plain query
    /// parser): the original repeated its weight (rounded) times, then the expansions.
    pub fn repeated_query_text<S: AsRef<str>>(&self, analyzer: &Analyzer, original: &str, expansions: &[S]) -> String {
        let expansions: Vec<&str> = expansions.iter().map(|e| e.as_ref().trim()).filter(|e| !e.is_empty()).collect();
        if expansions.is_empty() {
            return original.to_string();
        }
        let base = WeightedQuery::from_text(analyzer, original).total_weight();
        let mut mass = WeightedQuery::new();
        for e in &expansions {
            mass.add_text(analyzer, e, 1.0 / expansions.len() as f32);
        }
        let repeats = self.query_weight.original_weight(base, mass.total_weight()).round().max(0.0) as usize;
        let mut parts = vec![original; repeats];
        parts.extend(expansions);
        parts.join("\n")
    }

    /// A corpus document as BM25 indexes it, with its augmentation where it has one.
    pub fn index_doc(&self, doc: &coaug_data::Document, augmentation: Option<&str>) -> IndexDoc {
        let augmentation = augmentation.map(str::trim).filter(|a| !a.is_empty()).map(str::to_string);
        IndexDoc { augmentation, ..IndexDoc::from(doc) }
    }

    pub fn field_setup(&self) -> FieldSetup {
        FieldSetup { augmentation: self.doc_field.placement() }
    }

    pub fn field_weights(&self) -> FieldWeights {
        self.doc_field.field_weights()
    }

    /// A document as a dense encoder reads it augmented: the abstract the LM wrote in front of
    /// the text (the dense document prompt asks for an introduction).
    pub fn dense_document_text(&self, text: &str, augmentation: Option<&str>) -> String {
        match augmentation.map(str::trim).filter(|a| !a.is_empty()) {
            Some(a) if !text.is_empty() => format!("{a}\n{text}"),
            Some(a) => a.to_string(),
            None => text.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(q: &WeightedQuery) -> Vec<(String, f32)> {
        q.terms().to_vec()
    }

    #[test]
    fn fixed_weight_multiplies_the_original_terms() {
        let a = Analyzer::default();
        let c = Composition { query_weight: QueryWeight::Fixed(5.0), ..Composition::default() };
        let q = c.bm25_query(&a, "statins", &["cholesterol, statins"]);
        assert_eq!(weights(&q), [("statin".to_string(), 6.0), ("cholesterol".to_string(), 1.0)]);
        // No expansion: the plain query, whatever the weight.
        assert_eq!(c.bm25_query::<&str>(&a, "statins statins", &[]).weight("statin"), 2.0);
    }

    #[test]
    fn share_adapts_to_the_length_ratio() {
        let a = Analyzer::default();
        let c = Composition { query_weight: QueryWeight::Share(0.5), ..Composition::default() };
        // 2 original terms, 8 expansion terms: share 0.5 gives the original weight 4 each.
        let q = c.bm25_query(&a, "bone density", &["calcium vitamin osteoporosis fracture hip spine estrogen menopause"]);
        assert_eq!(q.weight("bone"), 4.0);
        assert_eq!(q.weight("calcium"), 1.0);
        let original: f32 = ["bone", "densiti"].iter().map(|t| q.weight(t)).sum();
        assert!((original / q.total_weight() - 0.5).abs() < 1e-6);
        // Never below 1: a short expansion leaves the original at weight 1.
        assert_eq!(c.bm25_query(&a, "bone density osteoporosis", &["calcium"]).weight("bone"), 1.0);
    }

    #[test]
    fn terms_keeps_a_larger_share_for_longer_queries() {
        let a = Analyzer::default();
        let c = Composition { query_weight: QueryWeight::Terms(2.0), ..Composition::default() };
        let expansion = ["calcium vitamin osteoporosis fracture hip spine estrogen menopause"];
        let share = |q: &WeightedQuery, original: &[&str]| original.iter().map(|t| q.weight(t)).sum::<f32>() / q.total_weight();
        // 8 expansion terms weigh as much as 2 original terms: each original term weighs 4.
        let short = c.bm25_query(&a, "bone density", &expansion);
        assert_eq!(short.weight("bone"), 4.0);
        assert!((share(&short, &["bone", "densiti"]) - 2.0 / 4.0).abs() < 1e-6);
        // Six original terms keep 6 / (6 + 2) of the weight.
        let long = c.bm25_query(&a, "bone density loss in older women treated with statins", &expansion);
        assert!((share(&long, &["bone", "densiti", "loss", "older", "women", "treat", "statin"]) - 7.0 / 9.0).abs() < 1e-6);
        // Never below 1, and no expansion leaves the query as it is.
        assert_eq!(c.bm25_query(&a, "bone", &["calcium"]).weight("bone"), 1.0);
        assert_eq!(c.bm25_query::<&str>(&a, "bone", &[]).weight("bone"), 1.0);
    }

    #[test]
    fn several_samples_weigh_one_expansion_in_total() {
        let a = Analyzer::default();
        let c = Composition { query_weight: QueryWeight::Fixed(2.0), ..Composition::default() };
        let q = c.bm25_query(&a, "bone", &["calcium", "calcium vitamin"]);
        assert_eq!(weights(&q), [("bone".to_string(), 2.0), ("calcium".to_string(), 1.0), ("vitamin".to_string(), 0.5)]);
        let rrf = Composition { sample_fusion: SampleFusion::Rrf, ..c };
        let runs = rrf.bm25_queries(&a, "bone", &["calcium", "vitamin"]);
        assert_eq!(runs.len(), 3);
        assert_eq!(weights(&runs[0]), [("bone".to_string(), 1.0)]);
        assert_eq!(weights(&runs[2]), [("bone".to_string(), 2.0), ("vitamin".to_string(), 1.0)]);
    }

    #[test]
    fn text_forms_for_other_engines() {
        let a = Analyzer::default();
        let c = Composition { query_weight: QueryWeight::Fixed(3.0), ..Composition::default() };
        assert_eq!(c.query_text("q", &["a1", " ", "a2"]), "q\na1\na2");
        assert_eq!(c.repeated_query_text(&a, "bone", &["calcium"]), "bone\nbone\nbone\ncalcium");
        assert_eq!(c.repeated_query_text::<&str>(&a, "bone", &[]), "bone");
        assert_eq!(c.dense_document_text("Body.", Some(" Abstract. ")), "Abstract.\nBody.");
        assert_eq!(c.dense_document_text("Body.", Some("")), "Body.");
        assert_eq!(c.dense_document_text("", Some("aug")), "aug", "no separator before an empty original");
        assert_eq!(c.dense_document_text("Body.", None), "Body.");
        assert_eq!(c.query_text("q", &[" "]), "q", "an empty expansion adds nothing");
    }

    #[test]
    fn settings_parse_from_cli_words_and_print_back() {
        assert_eq!("5".parse::<QueryWeight>().unwrap(), QueryWeight::Fixed(5.0));
        assert_eq!("share:0.4".parse::<QueryWeight>().unwrap(), QueryWeight::Share(0.4));
        assert!("share:1".parse::<QueryWeight>().is_err());
        assert_eq!("terms:3".parse::<QueryWeight>().unwrap(), QueryWeight::Terms(3.0));
        assert!("terms:0".parse::<QueryWeight>().is_err());
        assert!("terms:x".parse::<QueryWeight>().is_err());
        assert!("-1".parse::<QueryWeight>().is_err());
        assert!("x".parse::<QueryWeight>().unwrap_err().to_string().contains("share:S"));
        assert_eq!("own:0.3".parse::<DocField>().unwrap(), DocField::Own(0.3));
        assert_eq!("own".parse::<DocField>().unwrap(), DocField::Own(1.0));
        assert_eq!("body".parse::<DocField>().unwrap(), DocField::Body);
        assert!("own:x".parse::<DocField>().is_err());
        for s in ["share:0.4", "5", "terms:2.5"] {
            assert_eq!(s.parse::<QueryWeight>().unwrap().to_string(), s);
        }
        assert_eq!(DocField::Own(0.3).to_string(), "own:0.3");
        assert_eq!("rrf".parse::<SampleFusion>().unwrap(), SampleFusion::Rrf);
        // Configs write the command-line forms.
        let c = Composition { query_weight: QueryWeight::Share(0.6), doc_field: DocField::Own(0.25), sample_fusion: SampleFusion::Rrf };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"query_weight":"share:0.6","doc_field":"own:0.25","sample_fusion":"rrf"}"#);
        assert_eq!(serde_json::from_str::<Composition>(&json).unwrap(), c);
        assert!(serde_json::from_str::<Composition>(r#"{"doc_field":"own:x"}"#).is_err());
    }
}
