#!/usr/bin/env bash
# Issue 18's demonstration: corpus augmentation through the remote backend, against a server that
# fails a share of its requests (dropped connections, 429 with Retry-After, 500s, malformed JSON,
# bodies cut short, replies slower than the timeout), killed with SIGKILL twice, then resumed. At
# the end every document has exactly one stored augmentation, and it is its own (the fault server
# answers "expansion of: <the document>").
#
#   scripts/remote-resume-demo.sh [DOCS] [FAULT_RATE]     (defaults 10000 and 0.2)
#
# Builds the release binary and the fault server example; works in target/remote-demo.
set -euo pipefail
cd "$(dirname "$0")/.."
docs=${1:-10000}; rate=${2:-0.2}
work=target/remote-demo; port=18765
cargo build --release -q -p coaug
cargo build --release -q -p coaug-augment --features testing --example fault_server
rm -rf "$work"; mkdir -p "$work"
target/release/coaug bench scale --docs "$docs" --generate-only --dir "$work" 2>&1 | tail -1
target/release/examples/fault_server "$port" "$rate" 20 2> "$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 1

# `exec`: the background job's pid is then coaug's own, so the SIGKILL hits it (not a subshell
# that would leave coaug running).
augment() {
  exec target/release/coaug augment --dataset "synthetic-$docs" --data-dir "$work" --role docs --log warn \
    --backend openai --base-url "http://127.0.0.1:$port/v1" --model fault-model \
    --remote-concurrency 32 --remote-timeout 1 --batch-size 64 --store "$work/store.sqlite"
}
rows() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from augmentations').fetchone()[0])" "$work/store.sqlite" 2>/dev/null || echo 0; }

started=$(date +%s)
for stop_at in $((docs * 3 / 10)) $((docs * 7 / 10)); do
  (augment > "$work/run.log" 2>&1) &
  job=$!
  while [ "$(rows)" -lt "$stop_at" ]; do sleep 0.5; done
  kill -9 "$job"; wait "$job" 2>/dev/null || true
  echo "killed (SIGKILL) with $(rows) of $docs documents stored"
done
(augment 2>&1) | grep -E "^documents:|^store:" || true
elapsed=$(( $(date +%s) - started ))
stats=$(curl -s "http://127.0.0.1:$port/v1/stats")
echo "server: $stats"
python3 - "$work/store.sqlite" "$work/synthetic-$docs/corpus.jsonl" "$docs" "$elapsed" "$stats" <<'PY'
import json, sqlite3, sys
store, corpus, docs, elapsed, stats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
titles = {}
for line in open(corpus):
    d = json.loads(line)
    titles[d["_id"]] = d["title"].rstrip(".")
rows = sqlite3.connect(store).execute("select item_id, raw_response from augmentations").fetchall()
ids = [r[0] for r in rows]
assert len(ids) == len(set(ids)), "a document stored twice"
assert set(ids) == set(titles), f"{len(set(titles) - set(ids))} documents missing"
wrong = [i for i, raw in rows if not raw.startswith("<answer>expansion of: " + titles[i])]
assert not wrong, f"{len(wrong)} rows hold another document's reply, e.g. {wrong[:3]}"
print(json.dumps({"docs": docs, "stored": len(rows), "wrong_or_duplicate": 0, "elapsed_s": elapsed,
                  "requests": stats["asked"], "answered": stats["answered"],
                  "generated_again_after_kills": stats["answered"] - docs}))
print(f"PASS: {docs} documents, each stored exactly once with its own reply, after 2 SIGKILLs and injected faults")
PY
