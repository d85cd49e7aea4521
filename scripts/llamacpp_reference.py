#!/usr/bin/env python3
"""Records llama.cpp's reference for coaug-lm's parity test (crates/coaug-lm/tests/llamacpp_parity.rs).

For each model and prompt: the prompt's token ids as llama.cpp tokenizes it, the first 16 greedy
tokens with the gap between the best and second-best logit at each step, and at the first 4
generated positions the top-10 token ids with their logits.

usage: python llamacpp_reference.py OUT.json NAME=GGUF [NAME=GGUF ...]
(needs llama-cpp-python: ../shared/peers/setup.sh makes a venv with it)
"""
import json
import sys

import numpy as np
from llama_cpp import Llama

# Rendered with the models' chat templates (ChatML for all three), so both sides read the same text.
SYSTEM = "You expand search queries for a keyword search engine. Reply with a comma-separated list of keywords."
USERS = [
    "statins and breast cancer",
    "Do vitamin D supplements prevent bone fractures in older adults?",
    "Coffee consumption and heart disease: a cohort study of 40,000 people.",
]
GREEDY = 16
POSITIONS = 4
TOP = 10


def chatml(user):
    return f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def reference(path):
    llm = Llama(model_path=path, n_ctx=512, n_threads=2, n_batch=512, logits_all=True, verbose=False, seed=0)
    out = []
    for user in USERS:
        text = chatml(user)
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        generated, tops, gaps = [], [], []
        for step in range(GREEDY):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            if step < POSITIONS:
                order = np.argsort(-logits, kind="stable")[:TOP]
                tops.append({"ids": [int(i) for i in order], "logits": [float(logits[i]) for i in order]})
            tok = int(np.argmax(logits))
            best_two = np.sort(logits)[-2:]
            gaps.append(float(best_two[1] - best_two[0]))
            generated.append(tok)
            llm.eval([tok])
        out.append({"text": text, "prompt_ids": [int(i) for i in ids], "greedy": generated, "gaps": gaps, "top": tops})
    return out


def main():
    out_path, specs = sys.argv[1], sys.argv[2:]
    result = {"llama_cpp_python": __import__("llama_cpp").__version__, "models": {}}
    for spec in specs:
        name, path = spec.split("=", 1)
        result["models"][name] = reference(path)
        print(f"{name}: done", file=sys.stderr)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
