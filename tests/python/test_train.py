"""coaug.train on a tiny corpus with a tiny random model (written by coaug.write_tiny_model), and
the trained policy loaded into an Augmenter (temporary stores only)."""

import json

import pytest

import coaug

WORDS = [f"w{i}" for i in range(40)]

# Small enough for a couple of seconds a step on one core: 2 groups of 1 query + 1 positive +
# 2 random negatives, 4 rollouts a query and 2 a document of at most 4 tokens.
TINY = {
    "preset": "cpu-small",
    "seed": 3,
    "composite": {"groups_per_step": 2, "positives": 1, "hard_negatives": 0, "random_negatives": 2},
    "rollout": {
        "samples_per_prompt": 2,
        "query_samples_per_prompt": 4,
        "max_new_tokens": 4,
        "query_max_new_tokens": 4,
        "max_document_tokens": 16,
    },
    "reward": {"joint_samples": 16},
    "optimizer": {"learning_rate": 0.05, "mini_batches": 1, "micro_batch_size": 16},
    "schedule": {"epochs": 100.0, "max_steps": 2, "checkpoint_every": 1},
    "validation": {"every_steps": 1, "split": "test", "queries": 0, "pool_per_query": 3},
}

STEP_KEYS = {"step", "reward_query", "reward_positive_document", "reward_negative_document", "loss", "kl", "skipped", "step_s"}


@pytest.fixture
def train_data(tmp_path):
    """16 documents of filler words, 6 queries: q0–q3 judged in train, q4–q5 in test."""
    root = tmp_path / "tiny-train"
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w") as f:
        for d in range(16):
            text = " ".join(f"w{5 + (d * 3 + k * 5) % 35}" for k in range(4))
            f.write(json.dumps({"_id": f"d{d}", "title": f"w{d % 7}", "text": text}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for q in range(6):
            f.write(json.dumps({"_id": f"q{q}", "text": f"w{5 + q * 4} w{6 + q * 7}"}) + "\n")
    for split, judged in {"train": range(0, 8), "test": range(8, 12)}.items():
        with open(root / "qrels" / f"{split}.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for d in judged:
                q = d // 2
                f.write(f"q{q}\td{d}\t1\n")
    return root


@pytest.fixture
def model(tmp_path):
    return str(coaug.write_tiny_model(tmp_path / "model", WORDS, seed=1))


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_train_writes_the_run_directory_and_the_policy_augments(tmp_path, train_data, model):
    calls = []
    run = coaug.train(
        TINY,
        dataset=str(train_data),
        out=tmp_path / "run",
        model=model,
        progress=lambda done, total: calls.append((done, total)),
    )
    run_dir = tmp_path / "run"
    assert str(run["run_dir"]) == str(run_dir)
    assert (run["steps"], run["total_steps"], run["resumed_at"]) == (2, 2, None)
    assert calls == [(1, 2), (2, 2)]
    assert [m["step"] for m in run["metrics"]] == [0, 1]
    assert all(STEP_KEYS <= set(m) for m in run["metrics"])
    assert lines(run_dir / "metrics.jsonl") == run["metrics"]
    # Validation: queries + pool at the start, the queries before each step and at the end (after
    # step 2, not validated yet), queries + pool at the end.
    kinds = [(v["step"], v["kind"]) for v in run["validation"]]
    assert kinds == [(0, "both"), (0, "query"), (1, "query"), (2, "query"), (2, "both")]
    assert all(0.0 <= v["ndcg_at_10"] <= 1.0 and v["queries"] == 2 for v in run["validation"])
    assert lines(run_dir / "validation.jsonl") == run["validation"]
    assert "seed = 3" in (run_dir / "config.toml").read_text()
    latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 2
    assert str(run["checkpoint"]) == str(run_dir / "checkpoints" / latest["checkpoint"])
    assert (run_dir / "checkpoints" / "step-000001.safetensors").is_file()
    assert (run_dir / "checkpoints" / "step-000002.safetensors").is_file()

    # The trained policy generates through a store, keyed apart from the base model.
    store = str(tmp_path / "s.sqlite")
    settings = dict(store=store, max_new_tokens=4, query_max_new_tokens=4, query_samples=2, query_temperature=1.0)
    queries = {f"q{q}": f"w{5 + q * 4} w{6 + q * 7}" for q in range(6)}
    base = coaug.Augmenter(model, **settings)
    trained = coaug.Augmenter(model, policy=run["checkpoint"], **settings)
    assert trained.fingerprint != base.fingerprint
    base_out = base.queries(queries)
    rows = base.store_rows()
    trained_out = trained.queries(queries)
    assert trained.store_rows() > rows, "the policy's expansions are stored under their own key"
    assert trained_out, "the policy writes expansions"
    assert all(set(t.split()) <= set(WORDS) | {"[UNK]"} for v in trained_out.values() for t in v)
    assert trained_out != base_out, "two steps at a high learning rate change what the model writes"
    assert trained.queries(queries) == trained_out  # read back from the store
    with pytest.raises(ValueError, match="policy"):
        coaug.Augmenter(backend="tiny-random", policy=run["checkpoint"], store=store)


def test_resume_continues_at_the_latest_checkpoint(tmp_path, train_data, model):
    out = tmp_path / "run"
    first = coaug.train(TINY, dataset=str(train_data), out=out, model=model, steps=1)
    assert (first["steps"], first["total_steps"], [m["step"] for m in first["metrics"]]) == (1, 1, [0])
    # A line of a step the checkpoint does not hold (a run killed mid-step) is dropped on resume.
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 1, "reward_query": 9.0}) + "\n")
    second = coaug.train(dataset=str(train_data), out=out, model=model, steps=2, resume=True)  # the saved config
    assert (second["resumed_at"], second["steps"]) == (1, 2)
    assert [m["step"] for m in second["metrics"]] == [1]
    assert [m["step"] for m in lines(out / "metrics.jsonl")] == [0, 1]
    assert lines(out / "metrics.jsonl")[1]["reward_query"] != 9.0
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 2
    # Done already: resuming again runs no step.
    third = coaug.train(dataset=str(train_data), out=out, model=model, steps=2, resume=True)
    assert (third["resumed_at"], third["steps"], third["metrics"]) == (2, 2, [])


def test_interrupt_between_steps_keeps_a_checkpoint(tmp_path, train_data, model):
    config = dict(TINY, schedule={"epochs": 100.0, "max_steps": 3, "checkpoint_every": 10}, validation={"every_steps": 0})
    out = tmp_path / "run"

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        coaug.train(config, dataset=str(train_data), out=out, model=model, progress=stop)
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 1
    assert [m["step"] for m in lines(out / "metrics.jsonl")] == [0]
    resumed = coaug.train(dataset=str(train_data), out=out, model=model, resume=True)
    assert (resumed["resumed_at"], resumed["steps"], resumed["total_steps"]) == (1, 3, 3)
    assert [m["step"] for m in lines(out / "metrics.jsonl")] == [0, 1, 2]


def test_bad_configs_raise(tmp_path, train_data, model):
    def train(config, **kwargs):
        return coaug.train(config, **{"dataset": str(train_data), "out": tmp_path / "run", "model": model, **kwargs})

    with pytest.raises(ValueError, match="samples_per_prompt"):
        train({"rollout": {"samples_per_prompt": 0}})
    with pytest.raises(ValueError, match="unknown field"):
        train({"preset": "cpu-small", "nonsense": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        train({"preset": "gpu-huge"})
    with pytest.raises(ValueError, match="not a preset"):
        train("gpu-huge")
    with pytest.raises(ValueError, match="steps"):
        train(TINY, steps=0)
    with pytest.raises(ValueError, match="dense"):
        train(dict(TINY, retriever="dense"))
    with pytest.raises(FileNotFoundError):
        train(str(tmp_path / "missing.toml"))
    with pytest.raises(FileNotFoundError):
        train(TINY, dataset=str(tmp_path / "no-such-dataset"))
    with pytest.raises(FileNotFoundError):
        train(TINY, model=str(tmp_path / "no-model"))
    # A TOML file works like the dict.
    toml = tmp_path / "tiny.toml"
    toml.write_text('preset = "cpu-small"\n[rollout]\nsamples_per_prompt = 0\n')
    with pytest.raises(ValueError, match="samples_per_prompt"):
        train(str(toml))
