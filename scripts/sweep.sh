#!/usr/bin/env bash
# The tuning sweep behind coaug's defaults (docs/results/sweep.md), on held-out queries only:
# NFCorpus dev (324 queries) and the first 400 judged SciFact train queries. Never the test split.
#
# usage: scripts/sweep.sh [OUT]   (default runs/sweep; needs COAUG_DATA or the datasets in the cache)
#
# Every augmentation goes through one SQLite store ($STORE, default OUT/store.sqlite), so a rerun
# regenerates nothing and an interrupted sweep resumes. On 2 cores the 1.5B runs take ~20 min per
# split and prompt, the 135M runs a few minutes; the whole sweep about 5 hours.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-runs/sweep}
mkdir -p "$out"
coaug=${COAUG:-"$here/target/release/coaug"}
store=${STORE:-"$out/store.sqlite"}
prompts="$here/docs/results/sweep"
weights=1,3,5,8,share:0.3,share:0.4,share:0.5,share:0.6,share:0.7,share:0.8

# eval NAME DATASET-ARGS... : query-side sweep of the query weight (and whatever flags follow).
sweep() {
  local name=$1; shift
  "$coaug" eval --augment query --store "$store" --query-weight "$weights" --out "$out/$name" "$@"
}
nf=(--dataset nfcorpus --split dev)
sf=(--dataset scifact --split train --eval-limit 400)

for model in smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-1.5b; do
  # Stop lists × query weights, keyword prompt (64 new tokens).
  sweep "nf-$model-keywords" "${nf[@]}" --model "$model" --prompts "$prompts/query-keywords.toml" --query-max-new-tokens 64 --stop-words nltk,lucene
  sweep "sf-$model-keywords" "${sf[@]}" --model "$model" --prompts "$prompts/query-keywords.toml" --query-max-new-tokens 64 --stop-words nltk,lucene
done
for model in smollm2-135m qwen2.5-coder-1.5b; do
  # The passage prompt (96 new tokens).
  sweep "nf-$model-passage" "${nf[@]}" --model "$model" --prompts "$prompts/query-passage.toml" --query-max-new-tokens 96
  sweep "sf-$model-passage" "${sf[@]}" --model "$model" --prompts "$prompts/query-passage.toml" --query-max-new-tokens 96
  # Pseudo-relevance feedback: the top 3 BM25 passages with the query.
  sweep "nf-$model-keywords-context3" "${nf[@]}" --model "$model" --prompts "$prompts/query-keywords.toml" --query-max-new-tokens 64 --query-context 3
  sweep "sf-$model-keywords-context3" "${sf[@]}" --model "$model" --prompts "$prompts/query-keywords.toml" --query-max-new-tokens 64 --query-context 3
done
# Several sampled expansions, concatenated or fused by RRF.
sweep nf-135m-keywords-3-samples "${nf[@]}" --model smollm2-135m --prompts "$prompts/query-keywords.toml" --query-max-new-tokens 64 \
  --query-samples 3 --query-temperature 0.7 --sample-fusion concat,rrf
sweep sf-135m-keywords-3-samples "${sf[@]}" --model smollm2-135m --prompts "$prompts/query-keywords.toml" --query-max-new-tokens 64 \
  --query-samples 3 --query-temperature 0.7 --sample-fusion concat,rrf
sweep nf-135m-passage-5-samples "${nf[@]}" --model smollm2-135m --prompts "$prompts/query-passage.toml" \
  --query-max-new-tokens 96 --query-samples 5 --query-temperature 0.7 --sample-fusion concat,rrf
sweep sf-135m-passage-5-samples "${sf[@]}" --model smollm2-135m --prompts "$prompts/query-passage.toml" \
  --query-max-new-tokens 96 --query-samples 5 --query-temperature 0.7 --sample-fusion concat,rrf
# An ensemble of the two prompt styles (1.5B).
sweep nf-1.5b-keywords+passage "${nf[@]}" --model qwen2.5-coder-1.5b --prompts "$prompts/query-keywords.toml" \
  --extra-query-prompts "$prompts/query-passage.toml" --query-max-new-tokens 96
sweep sf-1.5b-keywords+passage "${sf[@]}" --model qwen2.5-coder-1.5b --prompts "$prompts/query-keywords.toml" \
  --extra-query-prompts "$prompts/query-passage.toml" --query-max-new-tokens 96
# The document side, with the defaults the query sweeps chose (passage prompt for queries, 96
# tokens; keyword prompt for documents, 64 tokens; share:0.5): the whole corpus augmented, the
# placement and weight of the augmentation's field.
for ds in nf sf; do
  args=("${nf[@]}"); [ "$ds" = sf ] && args=("${sf[@]}")
  "$coaug" eval --table --store "$store" --query-weight share:0.5 --doc-field body,own:0.05,own:0.1,own:0.15,own:0.2,own:0.25,own:0.5,own:1 \
    --out "$out/$ds-smollm2-135m-documents" "${args[@]}"
done
echo "sweep tables: $out/*/sweep.md"
