"""Regenerates the golden run and pytrec_eval reference values for tests/golden.rs.

Command (from the repository root, with the peers venv of ../shared/peers/setup.sh):
    /tmp/coaug-peers/bin/python crates/coaug-eval/tests/golden/make_golden.py

What it does:
1. bm25s over NFCorpus (test split), configured as ../shared/peers/bm25s_bench.py (title+' '+text,
   English stop words, Snowball stemmer, method="lucene", k1=1.2, b=0.75), top-1000 per query.
2. Rounds scores to 1 decimal so that many documents tie: the metrics then depend on trec_eval's
   tie-breaking (score descending, then document id descending).
3. Exercises BEIR's conventions in the committed run:
   - DROPPED_QUERIES are left out: a qrels query missing from the run must score 0;
   - for IDENTICAL_ID_QUERIES a document whose id equals the query id is put at rank 1; BEIR's
     ignore_identical_ids (default True) removes it before pytrec_eval sees the run.
4. Writes the run (TREC format, gzip, deterministic bytes) and reads it back, so the values below
   are computed from exactly the scores the Rust test parses.
5. Evaluates with pytrec_eval (ndcg_cut, map_cut, recall, P at K_VALUES), averaging as BEIR does
   (mean over the evaluated queries; missing queries filled with an empty ranking, as
   ../shared/peers/beir_common.py does). MRR@k (BEIR's name) is trec_eval's recip_rank on the run
   truncated to its top k in trec_eval's order; the script checks that truncation against
   pytrec_eval's own P@k, so a wrong order would fail here rather than in the Rust test.
"""
import gzip, io, json, os, sys

import numpy as np
import bm25s, Stemmer, pytrec_eval

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "..", "shared", "peers"))
from beir_common import load_beir  # noqa: E402  (honours $COAUG_DATA)

DATASET = "nfcorpus"
DEPTH = 1000
K_VALUES = [1, 3, 5, 10, 100, 1000]
TAG = "bm25s-r1"
RUN_PATH = os.path.join(HERE, "nfcorpus_bm25s_r1.run.gz")
GOLDEN_PATH = os.path.join(HERE, "nfcorpus_bm25s_r1.golden.json")
DROPPED_QUERIES = ["PLAIN-1008", "PLAIN-2510"]
IDENTICAL_ID_QUERIES = ["PLAIN-1018", "PLAIN-102"]


def trec_order_key(item):
    """pytrec_eval keeps scores as C float (f32) and sorts by score desc, then doc id desc."""
    doc, score = item
    # Negated bytes order ids descending; the trailing 1 ranks a prefix after its extensions,
    # as strcmp does ("MED-10" before "MED-1").
    return (-float(np.float32(score)), [-b for b in doc.encode()] + [1])


def retrieve():
    corpus_ids, texts, qids, qtexts, qrels = load_beir(DATASET)
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
    qtoks = bm25s.tokenize(qtexts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)
    docs, scores = retriever.retrieve(qtoks, k=DEPTH, show_progress=False)
    run = {}
    for i, q in enumerate(qids):
        if q in DROPPED_QUERIES:
            continue
        ranking = {corpus_ids[int(d)]: round(float(s), 1) for d, s in zip(docs[i], scores[i])}
        if q in IDENTICAL_ID_QUERIES:
            ranking[q] = 99.0
        run[q] = ranking
    for q in DROPPED_QUERIES + IDENTICAL_ID_QUERIES:
        assert q in qrels, q
    return qrels, run


def write_run(run):
    buf = io.StringIO()
    for q in sorted(run):
        for rank, (doc, score) in enumerate(sorted(run[q].items(), key=trec_order_key), start=1):
            buf.write(f"{q} Q0 {doc} {rank} {score:.1f} {TAG}\n")
    with open(RUN_PATH, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
            f.write(buf.getvalue().encode())


def read_run():
    run = {}
    with gzip.open(RUN_PATH, "rt") as f:
        for line in f:
            q, _, doc, _, score, _ = line.split()
            run.setdefault(q, {})[doc] = float(score)
    return run


def evaluate(qrels, run):
    # BEIR: EvaluateRetrieval.evaluate(ignore_identical_ids=True) drops doc == query before scoring.
    run = {q: {d: s for d, s in docs.items() if d != q} for q, docs in run.items()}
    run = {q: run.get(q, {}) for q in qrels}
    ks = ",".join(map(str, K_VALUES))
    ev = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{ks}", f"map_cut.{ks}", f"recall.{ks}", f"P.{ks}"})
    full = ev.evaluate(run)
    names = {"ndcg_cut": "NDCG", "map_cut": "MAP", "recall": "Recall", "P": "P"}
    per_query = {q: {f"{names[m]}@{k}": full[q][f"{m}_{k}"] for m in names for k in K_VALUES} for q in full}

    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank", "P.1,3,5,10,100,1000"})
    for k in K_VALUES:
        top_k = {q: dict(sorted(docs.items(), key=trec_order_key)[:k]) for q, docs in run.items()}
        cut = rr.evaluate(top_k)
        for q in cut:
            assert cut[q][f"P_{k}"] == full[q][f"P_{k}"], (q, k, "truncation disagrees with trec_eval's order")
            per_query[q][f"MRR@{k}"] = cut[q]["recip_rank"]
    n = len(per_query)
    keys = sorted(per_query[next(iter(per_query))])
    mean = {key: sum(v[key] for v in per_query.values()) / n for key in keys}
    return mean, per_query


def main():
    qrels, run = retrieve()
    write_run(run)
    mean, per_query = evaluate(qrels, read_run())
    golden = {
        "dataset": DATASET, "split": "test", "run": os.path.basename(RUN_PATH),
        "pytrec_eval": __import__("importlib.metadata").metadata.version("pytrec-eval-terrier"),
        "bm25s": bm25s.__version__, "k_values": K_VALUES, "num_queries": len(per_query),
        "dropped_queries": DROPPED_QUERIES, "identical_id_queries": IDENTICAL_ID_QUERIES,
        "mean": mean,
        "per_query": {q: {k: round(v, 10) for k, v in sorted(m.items())} for q, m in sorted(per_query.items())},
    }
    with open(GOLDEN_PATH, "w") as f:
        json.dump(golden, f, indent=0, sort_keys=True)
        f.write("\n")
    print(json.dumps({k: round(v, 5) for k, v in mean.items()}))


if __name__ == "__main__":
    main()
