"""coaug from Python: LLM query/document co-augmentation for BM25 retrieval.

The engine is coaug's Rust crates (the same code as the ``coaug`` command line), so indexes,
rankings, metrics and the augmentation store are shared with it and give the same numbers::

    import coaug

    corpus, queries, qrels = coaug.load_beir("nfcorpus")          # BEIR's dict shapes
    index = coaug.BM25Index.build(corpus)                         # nltk stop words, as `coaug eval`
    results = index.search(queries, k=1000)                       # {qid: {docid: score}}
    print(coaug.evaluate(qrels, results)["NDCG@10"])

    expansions = coaug.Augmenter().queries(queries)               # through the shared store
    results = index.search(queries, k=1000, expansions=expansions)  # "+query aug"

    run = coaug.train("cpu-small", dataset="nfcorpus", out="runs/py")   # `coaug train`'s run directory
    trained = coaug.Augmenter(policy=run["checkpoint"])           # the trained policy
"""

from __future__ import annotations


from ._native import (
    Augmenter,
    BM25Index,
    CoaugError,
    Composition,
    Results,
    __version__,
    evaluate,
    load_beir,
    train,
    write_tiny_model,
)

__all__ = [
    "Augmenter",
    "BM25Index",
    "CoaugError",
    "Composition",
    "Results",
    "__version__",
    "evaluate",
    "load_beir",
    "train",
    "write_tiny_model",
]

# Results behaves as a read-only mapping {qid: {docid: score}}.
import collections.abc as _abc

_abc.Mapping.register(Results)
