"""coaug inside a PyTerrier experiment: BM25 and "+query aug" on NFCorpus test, evaluated by
PyTerrier's own `pt.Experiment` (ir-measures), next to coaug's numbers.

    pip install python-terrier target/wheels/coaug-*.whl   # PyTerrier >= 1.0 needs no Java for this
    python examples/pyterrier_nfcorpus.py                   # dataset from $COAUG_DATA or the cache

The "+query aug" row reads the expansions `coaug eval --dataset nfcorpus --table` stored (or
generates them with the default model, which takes a few minutes).
"""

import pandas as pd
import pyterrier as pt

import coaug
from coaug.pyterrier import Retriever

corpus, queries, qrels = coaug.load_beir("nfcorpus", split="test")
topics = pd.DataFrame({"qid": list(queries), "query": list(queries.values())})
qrels_frame = pd.DataFrame(
    [(qid, docno, label) for qid, docs in qrels.items() for docno, label in docs.items()],
    columns=["qid", "docno", "label"],
)

index = coaug.BM25Index.build(corpus)
bm25 = Retriever(index, k=1000)
bm25_qaug = Retriever(index, k=1000, augmenter=coaug.Augmenter())
assert isinstance(bm25, pt.Transformer)

table = pt.Experiment([bm25, bm25_qaug], topics, qrels_frame, eval_metrics=["ndcg_cut_10"], names=["BM25", "+query aug"])
print(table.to_string(index=False))

# The same rankings scored by coaug's own metrics (coaug eval's numbers).
for name, retriever in [("BM25", bm25), ("+query aug", bm25_qaug)]:
    frame = retriever.transform(topics)
    results = {qid: dict(zip(g["docno"], g["score"])) for qid, g in frame.groupby("qid")}
    print(f"coaug.evaluate {name}: nDCG@10 {coaug.evaluate(qrels, results)['NDCG@10']:.4f}")
