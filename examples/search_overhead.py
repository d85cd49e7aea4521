"""The Python layer's search overhead on NFCorpus (test queries, top-1000), to set beside
`coaug bench bm25 --datasets nfcorpus --no-peers` (the CLI's in-process figure, all threads).

Times, as the benchmark does, whole passes over the query set (one untimed warm-up pass, then
repeated passes for at least `--min-secs`; median pass), for three outputs:

- `search_results`: the ranking kept in Rust (`coaug.Results`), the same work as the benchmark's
  search plus reading the queries from a dict and releasing the GIL;
- `search`: BEIR's `{qid: {docid: score}}` built as Python dicts (323,000 entries);
- `search(as_frame=True)`: a pandas DataFrame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import coaug


def passes(fn, min_secs: float, min_passes: int = 5) -> list:
    fn()  # warm-up
    times = []
    started = time.perf_counter()
    while len(times) < min_passes or time.perf_counter() - started < min_secs:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="nfcorpus")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--stop-words", default="lucene", help="lucene: what `coaug bench bm25` indexes with")
    parser.add_argument("--min-secs", type=float, default=3.0)
    parser.add_argument("--frame", action="store_true", help="also time the DataFrame output (needs pandas)")
    args = parser.parse_args()

    corpus, queries, _ = coaug.load_beir(args.dataset)
    index = coaug.BM25Index.build(corpus, stop_words=args.stop_words)
    out = {"dataset": args.dataset, "queries": len(queries), "k": args.k, "stop_words": args.stop_words}
    cases = {
        "search_results": lambda: index.search_results(queries, args.k),
        "search_dict": lambda: index.search(queries, args.k),
    }
    if args.frame:
        cases["search_frame"] = lambda: index.search(queries, args.k, as_frame=True)
    for name, fn in cases.items():
        times = passes(fn, args.min_secs)
        med = statistics.median(times)
        out[name] = {"passes": len(times), "median_ms": round(med * 1e3, 3), "queries_per_s": round(len(queries) / med, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
