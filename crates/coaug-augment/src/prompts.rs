//! The four system prompts (role × retriever; docs/method.md §2), and loading overrides from a file.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// Which side of retrieval the text comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Query,
    Document,
}

/// Which retriever the augmented text is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retriever {
    Sparse,
    Dense,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Query => "query",
            Role::Document => "document",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Role::Query => "queries",
            Role::Document => "documents",
        }
    }
}

impl Retriever {
    pub fn as_str(self) -> &'static str {
        match self {
            Retriever::Sparse => "sparse",
            Retriever::Dense => "dense",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Retriever {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "query" | "queries" => Ok(Role::Query),
            "document" | "documents" | "doc" | "docs" => Ok(Role::Document),
            other => bail!("unknown role {other:?}: expected query or document"),
        }
    }
}

impl std::str::FromStr for Retriever {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sparse" | "bm25" => Ok(Retriever::Sparse),
            "dense" => Ok(Retriever::Dense),
            other => bail!("unknown retriever {other:?}: expected sparse or dense"),
        }
    }
}

/// The passage prompt (query2doc's idea): a short answer in a relevant document's words. Chosen
/// on NFCorpus dev and SciFact train queries over a keyword-list prompt and the method's
/// reasoning-then-keywords prompt, which small models answer with prose that matches nothing
/// (docs/results/sweep.md).
const QUERY_SPARSE: &str = "You help a keyword search engine. Write a short passage of 3 to 4 sentences that answers \
the user's search query, as it would appear in a relevant document, using the technical terms such a document would \
use. Reply with the passage inside <answer> </answer> and nothing else.";

/// Keywords a searcher would type that the document may not use: what closes the vocabulary gap
/// between lay queries and technical documents.
const DOCUMENT_SPARSE: &str = "You help a search engine index a scientific document. List 10 to 20 search keywords \
and short phrases for the document that a person looking for it might type but that the text may not use: \
plain-language terms, synonyms, related topics and questions. Reply with the comma-separated list inside \
<answer> </answer> and nothing else.";

const QUERY_DENSE: &str = "You help a semantic search engine understand a user's search query. Expand the \
query with relevant background information, context and terminology, written as fluent text. Your text will \
be appended right after the query, so do not repeat it. You may reason first inside <think> </think>; put \
the final expansion inside <answer> </answer>. \
Example: <think> reasoning </think> <answer> expansion </answer>";

const DOCUMENT_DENSE: &str = "You help a semantic search engine index a document. Write a concise abstract \
that summarises the main topic, findings and key terms of the document given by the user. Your abstract \
will be placed in front of the document, so it should read as its introduction. Put the abstract inside \
<answer> </answer>. \
Example: <answer> abstract </answer>";

/// Appended to the query's system prompt when the user turn carries retrieved passages
/// (pseudo-relevance feedback, `--query-context K`).
const CONTEXT_NOTE: &str = "The user also gives passages that a search engine returned for the query; \
some may be irrelevant. Use the relevant ones to choose the words that documents about the query use.";

/// The user turn of a query with pseudo-relevance feedback: the query, then the passages a
/// plain search returned for it, numbered.
pub fn query_with_context<S: AsRef<str>>(query: &str, passages: &[S]) -> String {
    let mut text = format!("Query: {}\n\nSearch results:", query.trim());
    for (i, p) in passages.iter().enumerate() {
        text.push_str(&format!("\n[{}] {}", i + 1, p.as_ref().trim()));
    }
    text
}

/// The system prompts for one role, one per retriever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePrompts {
    pub sparse: String,
    pub dense: String,
}

/// The four system prompts. A file may override any subset of them; the rest keep the defaults.
///
/// File format (TOML; JSON with the same shape is accepted too):
/// ```toml
/// context_note = "..."
/// [query]
/// sparse = "..."
/// [document]
/// dense = "..."
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptSet {
    pub query: RolePrompts,
    pub document: RolePrompts,
    /// Appended to the query prompt when the query comes with retrieved passages.
    pub context_note: String,
}

impl Default for PromptSet {
    fn default() -> Self {
        Self {
            query: RolePrompts { sparse: QUERY_SPARSE.into(), dense: QUERY_DENSE.into() },
            document: RolePrompts { sparse: DOCUMENT_SPARSE.into(), dense: DOCUMENT_DENSE.into() },
            context_note: CONTEXT_NOTE.into(),
        }
    }
}

/// The override file's shape: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptOverrides {
    #[serde(default)]
    query: RoleOverrides,
    #[serde(default)]
    document: RoleOverrides,
    context_note: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleOverrides {
    sparse: Option<String>,
    dense: Option<String>,
}

impl PromptSet {
    pub fn get(&self, role: Role, retriever: Retriever) -> &str {
        let prompts = match role {
            Role::Query => &self.query,
            Role::Document => &self.document,
        };
        match retriever {
            Retriever::Sparse => &prompts.sparse,
            Retriever::Dense => &prompts.dense,
        }
    }

    /// The defaults with the prompts found in `path` replacing theirs.
    /// `.json` files are read as JSON, anything else as TOML.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let content = std::fs::read_to_string(path).with_context(|| format!("cannot read prompt file {}", path.display()))?;
        let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let overrides: PromptOverrides = if is_json {
            serde_json::from_str(&content).with_context(|| format!("{}: invalid prompt file (JSON)", path.display()))?
        } else {
            toml::from_str(&content).with_context(|| format!("{}: invalid prompt file (TOML)", path.display()))?
        };
        let mut prompts = Self::default();
        prompts.apply(overrides);
        prompts.validate().with_context(|| format!("{}: invalid prompt", path.display()))?;
        Ok(prompts)
    }

    fn apply(&mut self, overrides: PromptOverrides) {
        if let Some(note) = overrides.context_note {
            self.context_note = note;
        }
        let pairs = [(&mut self.query, overrides.query), (&mut self.document, overrides.document)];
        for (prompts, o) in pairs {
            if let Some(p) = o.sparse {
                prompts.sparse = p;
            }
            if let Some(p) = o.dense {
                prompts.dense = p;
            }
        }
    }

    /// Every prompt must ask for the `<answer>` block, or nothing could be parsed from the replies.
    pub fn validate(&self) -> anyhow::Result<()> {
        for role in [Role::Query, Role::Document] {
            for retriever in [Retriever::Sparse, Retriever::Dense] {
                let prompt = self.get(role, retriever);
                if prompt.trim().is_empty() {
                    bail!("the {role}/{retriever} prompt is empty");
                }
                if !prompt.to_ascii_lowercase().contains("<answer>") {
                    bail!("the {role}/{retriever} prompt never mentions <answer>, so no reply could be parsed");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_four_distinct_valid_prompts() {
        let p = PromptSet::default();
        p.validate().unwrap();
        let all = [
            p.get(Role::Query, Retriever::Sparse),
            p.get(Role::Query, Retriever::Dense),
            p.get(Role::Document, Retriever::Sparse),
            p.get(Role::Document, Retriever::Dense),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The sparse query prompt asks for a passage, the dense document one for an introduction.
        assert!(p.get(Role::Query, Retriever::Sparse).contains("passage"));
        assert!(p.get(Role::Document, Retriever::Dense).contains("in front of"));
    }

    #[test]
    fn the_defaults_are_the_prompts_the_sweep_measured() {
        // docs/results/sweep.md measured these files; the store keys them by their exact text.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/results/sweep");
        let passage = PromptSet::load(&dir.join("query-passage.toml")).unwrap();
        let documents = PromptSet::load(&dir.join("document-keywords.toml")).unwrap();
        let d = PromptSet::default();
        assert_eq!(d.get(Role::Query, Retriever::Sparse), passage.get(Role::Query, Retriever::Sparse));
        assert_eq!(d.get(Role::Document, Retriever::Sparse), documents.get(Role::Document, Retriever::Sparse));
    }

    #[test]
    fn toml_override_replaces_only_given_prompts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prompts.toml");
        std::fs::write(&path, "[query]\nsparse = \"Give keywords in <answer></answer>.\"\n").unwrap();
        let p = PromptSet::load(&path).unwrap();
        assert_eq!(p.get(Role::Query, Retriever::Sparse), "Give keywords in <answer></answer>.");
        assert_eq!(p.get(Role::Query, Retriever::Dense), PromptSet::default().get(Role::Query, Retriever::Dense));
        assert_eq!(p.document, PromptSet::default().document);
    }

    #[test]
    fn json_override_is_read_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prompts.json");
        std::fs::write(&path, r#"{"document": {"dense": "Summarise. <answer>"}}"#).unwrap();
        let p = PromptSet::load(&path).unwrap();
        assert_eq!(p.get(Role::Document, Retriever::Dense), "Summarise. <answer>");
    }

    #[test]
    fn bad_override_files_name_the_file_and_problem() {
        let dir = tempfile::tempdir().unwrap();
        let typo = dir.path().join("typo.toml");
        std::fs::write(&typo, "[queries]\nsparse = \"x <answer>\"\n").unwrap();
        let err = format!("{:#}", PromptSet::load(&typo).unwrap_err());
        assert!(err.contains("typo.toml") && err.contains("queries"), "{err}");

        let no_tag = dir.path().join("notag.toml");
        std::fs::write(&no_tag, "[document]\nsparse = \"Write keywords.\"\n").unwrap();
        let err = format!("{:#}", PromptSet::load(&no_tag).unwrap_err());
        assert!(err.contains("document/sparse") && err.contains("<answer>"), "{err}");

        let missing = dir.path().join("absent.toml");
        assert!(format!("{:#}", PromptSet::load(&missing).unwrap_err()).contains("absent.toml"));
    }

    #[test]
    fn roles_and_retrievers_parse_from_cli_words() {
        assert_eq!("docs".parse::<Role>().unwrap(), Role::Document);
        assert_eq!("queries".parse::<Role>().unwrap(), Role::Query);
        assert_eq!("Dense".parse::<Retriever>().unwrap(), Retriever::Dense);
        assert!("both".parse::<Role>().is_err());
    }
}
