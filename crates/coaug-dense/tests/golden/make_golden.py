"""Reference embeddings of all-MiniLM-L6-v2 from sentence-transformers, for minilm_parity.rs.

Run once, in a throwaway venv (pip install sentence-transformers; it pulls torch):
    python make_golden.py ~/.cache/coaug/encoders/all-MiniLM-L6-v2 > minilm_golden.json
"""
import json
import sys

from sentence_transformers import SentenceTransformer
import sentence_transformers

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "Do statins cause muscle pain?",
    "vitamin D",
    "Breast cancer cells and soy isoflavones: a randomized trial of dietary intake.",
    "Café au lait spots, naïve Bayes and the Zürich cohort — accents survive tokenization.",
    "小鼠模型中的胰岛素抵抗 🧪 with mixed scripts",
    "def score(q, d): return sum(idf[t] for t in q if t in d)  # code is text too",
    "   leading and trailing spaces   ",
    "!!!",
    # Longer than the 256-token limit, so truncation is exercised.
    " ".join(
        f"Sentence {i} of a long abstract about dietary fibre, gut microbiota, short-chain fatty acids and colorectal cancer risk."
        for i in range(40)
    ),
]

model = SentenceTransformer(sys.argv[1], device="cpu")
vectors = model.encode(TEXTS, normalize_embeddings=True, batch_size=4)
json.dump(
    {
        "model": "all-MiniLM-L6-v2",
        "sentence_transformers": sentence_transformers.__version__,
        "max_seq_length": model.max_seq_length,
        "texts": TEXTS,
        "embeddings": [[round(float(x), 7) for x in v] for v in vectors],
    },
    sys.stdout,
)
print()
