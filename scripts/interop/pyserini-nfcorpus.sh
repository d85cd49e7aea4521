#!/usr/bin/env bash
# Issue 18's Lucene interop check: the NFCorpus test queries augmented by coaug (documents and
# queries, the project's default composition), exported for Pyserini, indexed and searched by
# Lucene (Anserini), scored by Pyserini's trec_eval, against `coaug eval --augment both` on the
# same augmented texts. Passes when the pretokenized export's nDCG@10 is within 0.005 of coaug's
# (it is exact in practice); the raw-text export, analyzed by Lucene's own English analyzer, is
# reported beside it.
#
#   scripts/interop/pyserini-nfcorpus.sh [OUT_DIR]      (default target/interop)
#
# Env: COAUG (the binary, default target/release/coaug), COAUG_DATA (a BEIR folder; without it,
# coaug's cache, downloading NFCorpus once). The
# augmentations come from coaug's store, generated first if missing (all of NFCorpus with the
# default model: ~40 min on 2 cores). Not in CI for that reason; the Pyserini venv itself takes
# ~30 s (scripts/interop/setup-pyserini.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
coaug=${COAUG:-target/release/coaug}
out=${1:-target/interop}
# The dataset: $COAUG_DATA if set, else coaug's cache (downloaded by `coaug data` on first use).
"$coaug" data --dataset nfcorpus >&2
qrels="${COAUG_DATA:-${COAUG_CACHE:-$HOME/.cache/coaug}/datasets}/nfcorpus/qrels/test.tsv"
py=$(bash scripts/interop/setup-pyserini.sh | tail -n1)

"$coaug" eval --dataset nfcorpus --augment both --out "$out/coaug" >&2
ours=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['NDCG@10'])" "$out/coaug/metrics.json")

declare -A lucene
for mode in pretokenized raw; do
  flag=(); [ "$mode" = pretokenized ] && flag=(--export-analyzed)
  "$coaug" augment --dataset nfcorpus --role docs --export "$out/$mode" --export-format pyserini,elasticsearch "${flag[@]}" >&2
  "$coaug" augment --dataset nfcorpus --role queries --split test --export "$out/$mode" --export-format pyserini,elasticsearch "${flag[@]}" >&2
  weight=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['aug_weight'])" "$out/$mode/pyserini/settings.json")
  result=$("$py" scripts/interop/pyserini_check.py --export "$out/$mode" --qrels "$qrels" --out "$out/$mode.run" \
    --aug-weight "$weight" --mode "$mode" | tail -n1)
  lucene[$mode]=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['ndcg@10'])" "$result")
done

printf '| engine | nDCG@10 | − coaug |\n|---|---|---|\n'
printf '| coaug (tantivy) | %.4f | |\n' "$ours"
for mode in pretokenized raw; do
  printf '| Lucene, %s export | %.4f | %+.4f |\n' "$mode" "${lucene[$mode]}" "$(python3 -c "print(${lucene[$mode]} - $ours)")"
done
python3 -c "import sys; d = abs(${lucene[pretokenized]} - $ours); sys.exit(0 if d <= 0.005 else f'pretokenized export differs from coaug by {d:.4f} > 0.005')"
echo "PASS: Lucene on the pretokenized export is within 0.005 nDCG@10 of coaug" >&2
