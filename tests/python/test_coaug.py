"""The coaug package on a tiny corpus, with fake and tiny random generators (never the shared
store: every Augmenter here writes to a temporary one)."""

import collections.abc
import math
import os
import threading

import pytest

import coaug


# ---------------------------------------------------------------------------- load_beir


def test_load_beir_returns_beir_shapes(beir_dir, corpus, queries, qrels):
    c, q, r = coaug.load_beir(str(beir_dir))
    assert c == corpus
    assert q == queries  # the judged queries of the split only, as BEIR's loader
    assert r == qrels
    assert list(c) == list(corpus)  # corpus order kept


def test_load_beir_by_name_in_data_dir(beir_dir, corpus):
    c, _, _ = coaug.load_beir("tiny", data_dir=str(beir_dir.parent))
    assert c == corpus


def test_load_beir_missing_dir_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        coaug.load_beir(str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="not found"):
        coaug.load_beir("absent", data_dir=str(tmp_path))


def test_load_beir_not_a_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a BEIR dataset"):
        coaug.load_beir(str(tmp_path))


def test_load_beir_unknown_split_is_value_error(beir_dir):
    with pytest.raises(ValueError, match="no qrels split `dev`"):
        coaug.load_beir(str(beir_dir), split="dev")


def test_load_beir_malformed_file_is_coaug_error(beir_dir):
    with open(beir_dir / "corpus.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(coaug.CoaugError, match=r"corpus.jsonl:6: malformed JSON"):
        coaug.load_beir(str(beir_dir))
    assert issubclass(coaug.CoaugError, Exception)


# ---------------------------------------------------------------------------- BM25Index


def test_build_and_search_dict(corpus, queries):
    index = coaug.BM25Index.build(corpus)
    assert index.num_docs == len(index) == 5
    assert index.stop_words == "nltk"
    assert index.doc_ids == list(corpus)
    results = index.search(queries, k=3)
    assert set(results) == set(queries)
    assert next(iter(results["q1"])) in ("d1", "d5")
    assert next(iter(results["q2"])) in ("d2", "d4")
    assert list(results["q3"]) == ["d3"]  # only matching documents are returned
    for docs in results.values():
        assert len(docs) <= 3
        scores = list(docs.values())
        assert scores == sorted(scores, reverse=True)
        assert all(isinstance(s, float) and s > 0 for s in scores)


def test_search_k_limits_and_invalid_k(corpus, queries):
    index = coaug.BM25Index.build(corpus)
    assert all(len(d) <= 1 for d in index.search(queries, k=1).values())
    for bad in (0, -1):
        with pytest.raises(ValueError, match="k must be a positive number"):
            index.search(queries, k=bad)
        with pytest.raises(ValueError, match="k must be a positive number"):
            index.search_results(queries, k=bad)


def test_malformed_corpus_raises_value_error():
    bad_corpora = [
        ["not", "a", "dict"],
        {"d1": {"title": "no text field"}},
        {"d1": {"text": 42}},
        {"d1": 3.5},
        {(1, 2): {"text": "tuple id"}},
        {"": {"text": "empty id"}},
    ]
    for corpus in bad_corpora:
        with pytest.raises(ValueError):
            coaug.BM25Index.build(corpus)
    # plain strings and integer ids are accepted
    index = coaug.BM25Index.build({1: "first text", "2": {"text": "second text", "title": None}})
    assert index.doc_ids == ["1", "2"]


def test_malformed_queries_raise_value_error(corpus):
    index = coaug.BM25Index.build(corpus)
    with pytest.raises(ValueError, match="queries"):
        index.search({"q1": 5}, k=3)
    with pytest.raises(ValueError, match="queries must be a dict"):
        index.search("just a string", k=3)


def test_unknown_stop_list(corpus):
    with pytest.raises(ValueError, match="expected lucene, nltk or none"):
        coaug.BM25Index.build(corpus, stop_words="klingon")


def test_build_in_path_then_open(tmp_path, corpus, queries):
    path = tmp_path / "idx"
    built = coaug.BM25Index.build(corpus, str(path), stop_words="lucene")
    first = built.search(queries, k=5)
    opened = coaug.BM25Index.open(str(path))
    assert opened.stop_words == "lucene"
    assert opened.search(queries, k=5) == first
    assert str(opened.path) == str(path)
    # reused when it holds exactly this corpus
    again = coaug.BM25Index.build(corpus, str(path), stop_words="lucene")
    assert again.search(queries, k=5) == first


def test_open_missing_index(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        coaug.BM25Index.open(str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="holds no coaug index"):
        coaug.BM25Index.open(str(tmp_path))


def test_search_as_frame(corpus, queries):
    pd = pytest.importorskip("pandas")
    index = coaug.BM25Index.build(corpus)
    df = index.search(queries, k=3, as_frame=True)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["qid", "docno", "rank", "score"]
    as_dict = index.search(queries, k=3)
    assert len(df) == sum(len(d) for d in as_dict.values())
    for qid, group in df.groupby("qid"):
        assert list(group["docno"]) == list(as_dict[qid])
        assert list(group["rank"]) == list(range(len(group)))
        assert list(group["score"]) == list(as_dict[qid].values())


def test_results_mapping(corpus, queries, qrels):
    index = coaug.BM25Index.build(corpus)
    results = index.search_results(queries, k=3)
    plain = index.search(queries, k=3)
    assert isinstance(results, collections.abc.Mapping)
    assert len(results) == len(plain)
    assert list(results) == list(plain) == list(results.keys())
    assert "q1" in results and "nope" not in results
    assert results["q1"] == plain["q1"]
    assert results.get("nope") is None
    assert dict(results.items()) == plain
    assert results.to_dict() == plain
    assert results.num_entries == sum(len(d) for d in plain.values())
    with pytest.raises(KeyError):
        results["nope"]
    assert coaug.evaluate(qrels, results) == coaug.evaluate(qrels, plain)


def test_search_releases_the_gil_and_is_thread_safe(corpus, queries):
    index = coaug.BM25Index.build(corpus)
    expected = index.search(queries, k=5)
    out = []

    def work():
        for _ in range(20):
            out.append(index.search(queries, k=5) == expected)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 80 and all(out)


# ---------------------------------------------------------------------------- composition and expansions


def test_composition():
    default = coaug.Composition()
    assert default == coaug.Composition.default()
    assert default.query_weight.startswith("share:")
    assert default.doc_field.startswith("own:")
    assert default.sample_fusion == "concat"
    c = coaug.Composition(query_weight=5, doc_field="body", sample_fusion="rrf")
    assert (c.query_weight, c.doc_field, c.sample_fusion) == ("5", "body", "rrf")
    assert "Composition(" in repr(c)
    assert coaug.Composition.plain_append().doc_field == "body"
    with pytest.raises(ValueError):
        coaug.Composition(query_weight="share:2")
    with pytest.raises(ValueError):
        coaug.Composition(doc_field="nowhere")
    assert c.query_text("q", ["a", " ", "b"]) == "q\na\nb"
    terms = dict(coaug.Composition(query_weight="share:0.5").weighted_query("bones", ["calcium bones"]))
    # the original (mass 1) gets weight w with w / (w + 2) = 0.5: w = 2, plus the expansion's 1
    assert math.isclose(terms["bone"], 2.0 + 1.0, rel_tol=1e-6)
    assert math.isclose(terms["calcium"], 1.0, rel_tol=1e-6)
    assert coaug.Composition(query_weight=3).repeated_query_text("bones", ["calcium"]) == "bones\nbones\nbones\ncalcium"


def test_search_with_expansions(corpus, queries):
    index = coaug.BM25Index.build(corpus)
    plain = index.search(queries, k=5)
    # no expansion for any query: the plain ranking
    same = index.search(queries, k=5, expansions={})
    assert {q: list(d) for q, d in same.items()} == {q: list(d) for q, d in plain.items()}
    for q in plain:
        for doc, score in plain[q].items():
            assert math.isclose(same[q][doc], score, rel_tol=1e-5)
    expanded = index.search(queries, k=5, expansions={"q3": ["green tea protects cells"]})
    assert "d3" == next(iter(expanded["q3"]))
    assert expanded["q1"] == same["q1"]
    # with the expansion weighing as much as the query, more documents match
    rrf = index.search(queries, k=5, expansions={"q3": ["sleep", "statins"]}, composition=coaug.Composition(sample_fusion="rrf"))
    assert len(rrf["q3"]) > 1
    with pytest.raises(ValueError, match="build another index"):
        index.search(queries, k=5, expansions={}, composition=coaug.Composition(doc_field="body"))
    with pytest.raises(ValueError, match="unknown key"):
        index.search(queries, k=5, composition={"weight": 1})


def test_document_augmentations_in_own_field(corpus, queries):
    augs = {"d3": "heart disease risk"}
    index = coaug.BM25Index.build(corpus, doc_augmentations=augs, composition={"doc_field": "own:1"})
    assert index.composition.doc_field == "own:1"
    results = index.search(queries, k=5)
    assert "d3" in results["q2"]
    plain = coaug.BM25Index.build(corpus).search(queries, k=5)
    assert "d3" not in plain["q2"]


# ---------------------------------------------------------------------------- evaluate


def test_evaluate_perfect_and_empty(qrels):
    perfect = {q: {d: float(g) for d, g in docs.items()} for q, docs in qrels.items()}
    m = coaug.evaluate(qrels, perfect)
    assert m["NDCG@10"] == pytest.approx(1.0)
    assert m["Recall@100"] == pytest.approx(1.0)
    assert set(m) >= {"NDCG@1", "MAP@10", "P@5", "MRR@10", "Recall@1000"}
    assert coaug.evaluate(qrels, {})["NDCG@10"] == 0.0


def test_evaluate_options(qrels, corpus, queries):
    results = coaug.BM25Index.build(corpus).search(queries, k=10)
    only = coaug.evaluate(qrels, results, k_values=[10], metrics=["NDCG@10", "Recall@10"])
    assert set(only) == {"NDCG@10", "Recall@10"}
    mean, each = coaug.evaluate(qrels, results, per_query=True)
    assert set(each) == set(qrels)
    assert mean["NDCG@10"] == pytest.approx(sum(v["NDCG@10"] for v in each.values()) / len(each))
    with pytest.raises(ValueError, match="k_values must be positive"):
        coaug.evaluate(qrels, results, k_values=[0])
    with pytest.raises(ValueError, match="unknown metric"):
        coaug.evaluate(qrels, results, metrics=["nDCG@10"])
    with pytest.raises(ValueError):
        coaug.evaluate(qrels, {"q1": {"d1": "high"}})
    with pytest.raises(ValueError):
        coaug.evaluate({"q1": {"d1": "relevant"}}, results)


def test_evaluate_ignores_identical_ids(qrels):
    results = {"q1": {"q1": 9.0, "d1": 2.0, "d5": 1.0}}
    assert coaug.evaluate({"q1": qrels["q1"]}, results)["P@1"] == 1.0
    assert coaug.evaluate({"q1": qrels["q1"]}, results, ignore_identical_ids=False)["P@1"] == 0.0


# ---------------------------------------------------------------------------- Augmenter


def test_fake_augmenter_through_a_store(tmp_path, corpus, queries):
    store = str(tmp_path / "store.sqlite")
    aug = coaug.Augmenter(backend="fake", store=store)
    assert aug.fingerprint == "fake-keyword-echo-v1"
    expansions = aug.queries(queries)
    assert set(expansions) == set(queries)
    assert all(isinstance(v, list) and v and all(isinstance(t, str) for t in v) for v in expansions.values())
    docs = aug.documents(corpus)
    assert set(docs) == set(corpus)
    rows = aug.store_rows()
    assert rows == len(queries) + len(corpus)
    # a second augmenter on the same store reads what the first wrote, generating nothing new
    again = coaug.Augmenter(backend="fake", store=store)
    assert again.queries(queries) == expansions
    assert again.documents(corpus) == docs
    assert again.store_rows() == rows


def test_augmenter_progress(tmp_path, corpus):
    calls = []
    aug = coaug.Augmenter(backend="fake", store=str(tmp_path / "s.sqlite"), batch_size=1)
    docs = aug.documents(corpus, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (len(corpus), len(corpus))
    assert docs == coaug.Augmenter(backend="fake", store=str(tmp_path / "s.sqlite")).documents(corpus)

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    aug.documents(corpus, progress=bar)
    assert bar.n == len(corpus)


def test_tiny_random_model_generates(tmp_path, queries, corpus):
    aug = coaug.Augmenter(backend="tiny-random", store=str(tmp_path / "s.sqlite"), max_new_tokens=6, query_max_new_tokens=6)
    assert aug.fingerprint.startswith("tiny-random-llama")
    first = aug.queries(queries)
    assert all(isinstance(t, str) for v in first.values() for t in v)
    assert aug.queries(queries) == first  # read back from the store
    docs = aug.documents(corpus)
    index = coaug.BM25Index.build(corpus, doc_augmentations=docs)
    assert len(index.search(queries, k=5, expansions=first)) == len(queries)


def test_augmenter_query_context(tmp_path, corpus, queries):
    index = coaug.BM25Index.build(corpus)
    aug = coaug.Augmenter(backend="fake", store=str(tmp_path / "s.sqlite"), query_context=2)
    with pytest.raises(ValueError, match="needs context="):
        aug.queries(queries)
    with_context = aug.queries(queries, context=index)
    assert set(with_context) == set(queries)


def test_augmenter_bad_settings(tmp_path):
    store = str(tmp_path / "s.sqlite")
    with pytest.raises(ValueError, match="backend"):
        coaug.Augmenter(backend="gpt", store=store)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        coaug.Augmenter(backend="fake", store=store, batch_size=0)
    with pytest.raises(ValueError, match="need a temperature"):
        coaug.Augmenter(backend="fake", store=store, query_samples=2)
    with pytest.raises(ValueError, match="KV cache"):
        coaug.Augmenter(backend="fake", store=store, kv_cache="f8")
    with pytest.raises(FileNotFoundError):
        coaug.Augmenter(str(tmp_path / "missing.gguf"), store=store)
    with pytest.raises(FileNotFoundError, match="prompts"):
        coaug.Augmenter(backend="fake", store=store, prompts=str(tmp_path / "p.toml"))


def test_version():
    assert isinstance(coaug.__version__, str)


# ---------------------------------------------------------------------------- PyTerrier


def test_pyterrier_retriever(tmp_path, corpus, queries):
    pd = pytest.importorskip("pandas")
    from coaug.pyterrier import Retriever

    index = coaug.BM25Index.build(corpus)
    topics = pd.DataFrame({"qid": list(queries), "query": list(queries.values())})
    out = Retriever(index, k=3)(topics)
    assert list(out.columns) == ["qid", "query", "docno", "rank", "score"]
    expected = index.search(queries, k=3)
    for qid, group in out.groupby("qid"):
        assert list(group["docno"]) == list(expected[qid])
        assert set(group["query"]) == {queries[qid]}
    aug = coaug.Augmenter(backend="fake", store=str(tmp_path / "s.sqlite"))
    expanded = Retriever(index, k=3, augmenter=aug).transform(topics)
    direct = index.search(queries, k=3, expansions=aug.queries(queries))
    for qid, group in expanded.groupby("qid"):
        assert list(group["docno"]) == list(direct[qid])
    with pytest.raises(ValueError):
        Retriever(index, k=0)


def _pyterrier():
    """PyTerrier, or a skip where it is not installed; `.ci/run` installs it and sets
    COAUG_REQUIRE_PYTERRIER=1, so there a missing PyTerrier fails instead."""
    if os.environ.get("COAUG_REQUIRE_PYTERRIER") == "1":
        import pyterrier

        return pyterrier
    return pytest.importorskip("pyterrier")


def test_pyterrier_experiment_matches_coaug_evaluate(corpus, queries, qrels):
    pt = _pyterrier()
    import pandas as pd
    from coaug.pyterrier import Retriever

    index = coaug.BM25Index.build(corpus)
    bm25 = Retriever(index, k=5)
    assert isinstance(bm25, pt.Transformer)
    topics = pd.DataFrame({"qid": list(queries), "query": list(queries.values())})
    qrels_frame = pd.DataFrame(
        [(qid, docno, label) for qid, docs in qrels.items() for docno, label in docs.items()],
        columns=["qid", "docno", "label"],
    )
    table = pt.Experiment([bm25], topics, qrels_frame, eval_metrics=["ndcg_cut_10", "recip_rank"], names=["BM25"])
    ours = coaug.evaluate(qrels, index.search(queries, k=5))
    assert table["ndcg_cut_10"][0] == pytest.approx(ours["NDCG@10"], abs=1e-9)
    # The runs hold 5 documents, so the reciprocal rank at any depth is coaug's MRR@10.
    assert table["recip_rank"][0] == pytest.approx(ours["MRR@10"], abs=1e-9)
    # PyTerrier's operators compose with it: a rank cutoff keeps the top 2 of each query.
    cut = (bm25 % 2).transform(topics)
    assert cut.groupby("qid").size().max() == 2
    assert set(cut["docno"]) <= set(corpus)
