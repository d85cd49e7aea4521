"""A tiny BEIR dataset on disk, and its dicts."""

import json

import pytest

CORPUS = {
    "d1": {"title": "Vitamin D", "text": "Vitamin D deficiency is linked to weak bones and osteoporosis."},
    "d2": {"title": "Statins", "text": "Statins lower cholesterol and reduce the risk of heart disease."},
    "d3": {"title": "", "text": "Green tea contains antioxidants that may protect cells."},
    "d4": {"title": "Sleep", "text": "Poor sleep raises blood pressure and the risk of heart attacks."},
    "d5": {"title": "Calcium", "text": "Calcium and vitamin D supplements for bone health in older adults."},
}
QUERIES = {"q1": "vitamin D and bones", "q2": "heart disease risk", "q3": "antioxidants in tea", "q9": "unjudged query"}
QRELS = {"q1": {"d1": 2, "d5": 1}, "q2": {"d2": 1, "d4": 1}, "q3": {"d3": 1}}


@pytest.fixture
def beir_dir(tmp_path):
    root = tmp_path / "tiny"
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w") as f:
        for doc_id, doc in CORPUS.items():
            f.write(json.dumps({"_id": doc_id, "title": doc["title"], "text": doc["text"]}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for qid, text in QUERIES.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with open(root / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in QRELS.items():
            for doc_id, grade in docs.items():
                f.write(f"{qid}\t{doc_id}\t{grade}\n")
    return root


@pytest.fixture
def corpus():
    return {k: dict(v) for k, v in CORPUS.items()}


@pytest.fixture
def queries():
    return {k: v for k, v in QUERIES.items() if k in QRELS}


@pytest.fixture
def qrels():
    return {k: dict(v) for k, v in QRELS.items()}
