"""Type stubs of the coaug package (the native module's classes and functions)."""

from os import PathLike
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Literal, Mapping, Optional, Sequence, Tuple, TypedDict, Union, overload

import pandas

__version__: str

Corpus = Mapping[str, Union[Mapping[str, Optional[str]], str]]
"""BEIR's corpus: ``{doc_id: {"title": str, "text": str}}`` (a plain string is the text)."""
Queries = Mapping[str, str]
"""BEIR's queries: ``{query_id: text}``."""
Qrels = Mapping[str, Mapping[str, int]]
"""BEIR's relevance judgements: ``{query_id: {doc_id: grade}}``."""
RunDict = Dict[str, Dict[str, float]]
"""BEIR's ``results``: ``{query_id: {doc_id: score}}``."""
Expansions = Mapping[str, Union[str, Sequence[str]]]
"""Query expansions: ``{query_id: [text, ...]}``."""
StrPath = Union[str, "PathLike[str]"]
CompositionLike = Union["Composition", Mapping[str, Any], None]
Progress = Union[Callable[[int, int], Any], Any, None]
"""``callback(done, total)``, or a tqdm-style bar (its ``update(n)`` is called)."""

class CoaugError(Exception):
    """An error of coaug's engine (the message is the command line's)."""

def load_beir(
    name_or_dir: StrPath, split: str = "test", data_dir: Optional[StrPath] = None
) -> Tuple[Dict[str, Dict[str, str]], Dict[str, str], Dict[str, Dict[str, int]]]:
    """``(corpus, queries, qrels)`` of a BEIR dataset folder or name (``data_dir``, else
    ``$COAUG_DATA``, else coaug's cache, downloading the official zip on first use); the queries
    are those judged in ``split``. Raises FileNotFoundError for a missing dataset, ValueError for
    an unknown split, CoaugError for a malformed file."""

class Composition:
    """How an expansion and the original query are combined, and where a document's augmentation
    is searched (``--query-weight``, ``--doc-field``, ``--sample-fusion`` of the command line)."""

    def __init__(
        self,
        query_weight: Union[str, float, None] = None,
        doc_field: Optional[str] = None,
        sample_fusion: Optional[Literal["concat", "rrf"]] = None,
    ) -> None: ...
    @staticmethod
    def default() -> "Composition": ...
    @staticmethod
    def plain_append() -> "Composition": ...
    @property
    def query_weight(self) -> str: ...
    @property
    def doc_field(self) -> str: ...
    @property
    def sample_fusion(self) -> str: ...
    def query_text(self, original: str, expansions: Sequence[str]) -> str: ...
    def weighted_query(self, original: str, expansions: Sequence[str], stop_words: str = "nltk") -> List[Tuple[str, float]]: ...
    def repeated_query_text(self, original: str, expansions: Sequence[str], stop_words: str = "nltk") -> str: ...

class Results(Mapping[str, Dict[str, float]]):
    """A ranking kept in Rust: a read-only mapping ``{query_id: {doc_id: score}}``."""

    def __getitem__(self, qid: str) -> Dict[str, float]: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...
    def to_dict(self) -> RunDict: ...
    def to_frame(self) -> pandas.DataFrame: ...
    @property
    def num_entries(self) -> int: ...

class BM25Index:
    """BM25 (k1 = 1.2, b = 0.75, Porter2 stemming) on tantivy, searched from memory: the index of
    ``coaug index`` / ``coaug eval``."""

    @staticmethod
    def build(
        corpus: Corpus,
        path: Optional[StrPath] = None,
        *,
        stop_words: Literal["nltk", "lucene", "none"] = "nltk",
        doc_augmentations: Optional[Mapping[str, str]] = None,
        composition: CompositionLike = None,
    ) -> "BM25Index": ...
    @staticmethod
    def open(path: StrPath, *, composition: CompositionLike = None) -> "BM25Index": ...
    @overload
    def search(
        self,
        queries: Queries,
        k: int = 1000,
        *,
        expansions: Optional[Expansions] = None,
        composition: CompositionLike = None,
        as_frame: Literal[False] = False,
    ) -> RunDict: ...
    @overload
    def search(
        self,
        queries: Queries,
        k: int = 1000,
        *,
        expansions: Optional[Expansions] = None,
        composition: CompositionLike = None,
        as_frame: Literal[True],
    ) -> pandas.DataFrame: ...
    def search_results(
        self, queries: Queries, k: int = 1000, *, expansions: Optional[Expansions] = None, composition: CompositionLike = None
    ) -> Results: ...
    @property
    def num_docs(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def stop_words(self) -> str: ...
    @property
    def composition(self) -> Composition: ...
    @property
    def doc_ids(self) -> List[str]: ...
    def __len__(self) -> int: ...

@overload
def evaluate(
    qrels: Qrels,
    results: Union[Mapping[str, Mapping[str, float]], Results],
    *,
    k_values: Optional[Sequence[int]] = None,
    metrics: Optional[Sequence[str]] = None,
    ignore_identical_ids: bool = True,
    per_query: Literal[False] = False,
) -> Dict[str, float]: ...
@overload
def evaluate(
    qrels: Qrels,
    results: Union[Mapping[str, Mapping[str, float]], Results],
    *,
    k_values: Optional[Sequence[int]] = None,
    metrics: Optional[Sequence[str]] = None,
    ignore_identical_ids: bool = True,
    per_query: Literal[True],
) -> Tuple[Dict[str, float], Dict[str, Dict[str, float]]]: ...

class Augmenter:
    """LM query expansions and document augmentations through the augmentation store shared with
    the command line (``~/.cache/coaug/augment/store.sqlite`` unless ``store=``)."""

    def __init__(
        self,
        model: Optional[str] = None,
        *,
        backend: Literal["lm", "openai", "tiny-random", "fake"] = "lm",
        store: Optional[StrPath] = None,
        policy: Optional[StrPath] = None,
        precision: Literal["f32", "quantized"] = "f32",
        kv_cache: Literal["q8", "f16", "f32"] = "q8",
        batch_size: int = 32,
        max_input_tokens: int = 128,
        max_new_tokens: int = 64,
        query_max_new_tokens: int = 96,
        repetition_penalty: float = 1.2,
        parse: Literal["lenient", "strict"] = "lenient",
        prompts: Optional[StrPath] = None,
        query_samples: int = 1,
        query_temperature: float = 0.0,
        query_context: int = 0,
        context_tokens: int = 64,
        seed: int = 0,
        show_progress: bool = False,
        base_url: Optional[str] = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout: float = 120.0,
        attempts: int = 8,
    ) -> None: ...
    def queries(self, queries: Queries, *, context: Optional[BM25Index] = None, progress: Progress = None) -> Dict[str, List[str]]: ...
    def documents(self, corpus: Corpus, *, progress: Progress = None) -> Dict[str, str]: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def store(self) -> Path: ...
    def store_rows(self) -> int: ...

class TrainResult(TypedDict):
    """What ``train`` returns."""

    run_dir: Path
    """The run directory (``config.toml``, ``metrics.jsonl``, ``validation.jsonl``, ``checkpoints/``)."""
    steps: int
    """Steps completed, this call's and a resumed run's earlier ones."""
    total_steps: int
    resumed_at: Optional[int]
    """The step a ``resume=True`` call continued at (None for a fresh run)."""
    checkpoint: Optional[Path]
    """The latest checkpoint: ``Augmenter(model, policy=checkpoint)`` generates with the trained policy."""
    metrics: List[Dict[str, Any]]
    """This call's lines of ``metrics.jsonl`` (one per step: ``step``, ``reward_query``, ``loss``, …)."""
    validation: List[Dict[str, Any]]
    """This call's lines of ``validation.jsonl`` (``step``, ``kind``, ``ndcg_at_10``, …)."""

def train(
    config: Union[StrPath, Mapping[str, Any], None] = None,
    *,
    dataset: StrPath,
    data_dir: Optional[StrPath] = None,
    out: Optional[StrPath] = None,
    model: Optional[str] = None,
    prompts: Optional[StrPath] = None,
    steps: Optional[int] = None,
    seed: Optional[int] = None,
    resume: bool = False,
    progress: Progress = None,
) -> TrainResult:
    """RL training of the policy LM, as ``coaug train`` (same run directory, same resume).

    ``config``: a TOML file, a dict of the same settings (an optional ``"preset"`` plus
    overrides), a preset's name (``"cpu-small"``, ``"paper"``), or None (the saved config when
    resuming, else ``cpu-small``). ``dataset``: a BEIR folder or a name looked up in ``data_dir``
    (train qrels for the reward, the config's ``validation.split`` for validation). ``out``: the
    run directory (``runs/train-<dataset>``). ``model``: the policy's weights (the config's model
    otherwise). ``steps``: the cap on optimizer steps (``--max-steps``). ``resume``: continue from
    the latest checkpoint in ``out``. ``progress``: ``callback(done, total)`` or a tqdm bar, after
    every step. Runs on the CPU with the sparse (BM25) retriever; releases the GIL. Ctrl-C stops
    between steps with a checkpoint of the last one (``resume=True`` continues there). A bad
    config raises ``ValueError``.
    """

def write_tiny_model(path: StrPath, words: Sequence[str], *, seed: int = 0) -> Path:
    """A tiny random Llama with a word-level tokenizer of ``words``, written as an HF folder at
    ``path`` (for tests: it trains and generates in milliseconds; its replies are noise)."""
