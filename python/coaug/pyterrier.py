"""coaug as a PyTerrier transformer (optional: works without PyTerrier installed, as a plain
callable on topic DataFrames).

    import pyterrier as pt
    import coaug
    from coaug.pyterrier import Retriever

    index = coaug.BM25Index.build(corpus)
    bm25 = Retriever(index, k=1000)
    bm25_qaug = Retriever(index, k=1000, augmenter=coaug.Augmenter())   # "+query aug"
    pt.Experiment([bm25, bm25_qaug], topics, qrels, eval_metrics=["ndcg_cut_10"])

The input is PyTerrier's topics frame (``qid``, ``query``); the output its results frame
(``qid``, ``query``, ``docno``, ``rank``, ``score``).
"""

from __future__ import annotations

from typing import Any, Optional

try:  # PyTerrier is optional
    import pyterrier as _pt

    _Base: Any = _pt.Transformer
except Exception:  # pragma: no cover - depends on the environment
    _pt = None
    _Base = object

from ._native import Augmenter, BM25Index, Composition

__all__ = ["Retriever"]


class Retriever(_Base):  # type: ignore[misc, valid-type]
    """BM25 retrieval with coaug's index, optionally with LM query expansion.

    ``augmenter``: a ``coaug.Augmenter`` writing (or reading from the store) each query's
    expansions, composed with the query as ``composition`` says (default: the index's).
    ``expansions``: precomputed ``{qid: [text]}`` instead of an augmenter.
    """

    def __init__(
        self,
        index: BM25Index,
        k: int = 1000,
        *,
        augmenter: Optional[Augmenter] = None,
        expansions: Optional[dict] = None,
        composition: Optional[Composition] = None,
    ) -> None:
        if k <= 0:
            raise ValueError(f"k must be a positive number of documents, got {k}")
        if augmenter is not None and expansions is not None:
            raise ValueError("give augmenter= or expansions=, not both")
        self.index = index
        self.k = k
        self.augmenter = augmenter
        self.expansions = expansions
        self.composition = composition

    def transform(self, topics: Any) -> Any:
        import pandas as pd

        if "qid" not in topics.columns or "query" not in topics.columns:
            raise ValueError(f"topics need the columns qid and query, got {list(topics.columns)}")
        qids = topics["qid"].astype(str)
        queries = dict(zip(qids, topics["query"].astype(str)))
        expansions = self.expansions
        if self.augmenter is not None:
            expansions = self.augmenter.queries(queries)
        if expansions is None and self.composition is None:
            results = self.index.search(queries, self.k, as_frame=True)
        else:
            results = self.index.search(queries, self.k, expansions=expansions or {}, composition=self.composition, as_frame=True)
        query_col = pd.DataFrame({"qid": list(queries), "query": list(queries.values())})
        out = results.merge(query_col, on="qid", how="left")
        return out[["qid", "query", "docno", "rank", "score"]]

    def __call__(self, topics: Any) -> Any:
        return self.transform(topics)

    def __repr__(self) -> str:
        what = "+query aug" if (self.augmenter is not None or self.expansions is not None) else "BM25"
        return f"coaug.pyterrier.Retriever({what}, k={self.k}, {self.index!r})"
