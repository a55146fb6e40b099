#!/usr/bin/env bash
# The GPU check (benchmarks/gpu/check.py says what it runs and in which order), on a machine with one
# GPU and no network.  Here, first: benchmarks/gpu/prepare.sh (fills .whl/ and .data/gpu/, which
# travel with the tree).  There, from the tree's root:
#   benchmarks/gpu/run.sh            the check, within its deadline (DEADLINE_S, default 460 s)
#   benchmarks/gpu/run.sh --resume   a second call on the same machine: each part from its records
# Here, the same steps on the CPU, small (the wheels installed for CPython 3.12 into a scratch folder
# to prove they install; this Python runs on its own packages):
#   benchmarks/gpu/run.sh --dry-run
# Environment: OUT (where the results go; default runs/gpu-check[-dry-run]), PYTHON (default python3
# there, python here), DEADLINE_S, PARTS (a comma list of parts).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DRY=0; ARGS=()
for a in "$@"; do
    case $a in
        --dry-run) DRY=1; ARGS+=(--dry-run) ;;
        --resume) ARGS+=(--resume) ;;
        *) echo "run.sh: unknown argument $a (--dry-run, --resume)" >&2; exit 2 ;;
    esac
done
for need in .whl/common .data/gpu/glue/mrpc .data/gpu/bert-base-uncased/vocab.txt .data/gpu/minilm-l6/model.safetensors.xz; do
    [ -e "$need" ] || { echo "missing $need: run benchmarks/gpu/prepare.sh here first (and carry .whl and .data)" >&2; exit 2; }
done
SITE=${TMPDIR:-/tmp}/bench-gpu-site
rm -rf "$SITE"
if [ $DRY = 1 ]; then
    PY=${PYTHON:-python}
    # The wheels, installed as the device's Python 3.12 would take them (both sets).
    for set in .whl .whl/fallback; do
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE-$$" \
            --python-version 3.12 --implementation cp --only-binary=:all: --platform manylinux2014_x86_64 $set/*.whl .whl/common/*.whl \
            || { echo "the carried wheels ($set) do not install for CPython 3.12" >&2; exit 2; }
        rm -rf "$SITE-$$"
    done
    export PYTHONPATH=$ROOT
else
    PY=${PYTHON:-python3}
    # datasets 5.2 needs pyarrow >= 24; on an image with an older pyarrow, the fallback set (datasets
    # 4.0 with the dill, multiprocess and fsspec it accepts; pyarrow >= 15).
    WHEELS=.whl
    arrow=$("$PY" -c "import pyarrow; print(pyarrow.__version__.split('.')[0])" 2>/dev/null || echo 0)
    [ "$arrow" -ge 24 ] 2>/dev/null || WHEELS=.whl/fallback
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" $WHEELS/*.whl .whl/common/*.whl \
        || { echo "pip could not install the carried wheels ($WHEELS)" >&2; exit 2; }
    export PYTHONPATH=$SITE:$ROOT
    # The copy's .git may be missing or stale (seen: the session's first commit, "-dirty"): bench reads
    # the commit prepare.sh wrote, for as long as the check runs.
    cp .data/gpu/commit.txt .bench-commit
fi
# MiniLM's weights travel xz-compressed (prepare.sh): unpacked beside their config for as long as the
# check runs, then removed, so what travels from this folder stays the compressed copy alone.
WEIGHTS=.data/gpu/minilm-l6/model.safetensors
trap 'rm -f .bench-commit "$WEIGHTS" "$WEIGHTS.part"' EXIT
"$PY" -c '
import lzma, os, sys
packed, out = sys.argv[1] + ".xz", sys.argv[1]
with lzma.open(packed) as src, open(out + ".part", "wb") as dst:
    while chunk := src.read(1 << 22):
        dst.write(chunk)
os.replace(out + ".part", out)
' "$WEIGHTS" || { echo "could not unpack $WEIGHTS.xz (run benchmarks/gpu/prepare.sh again)" >&2; exit 2; }
# Every cache in a scratch folder; nothing reaches for the Hub.
export HF_HOME=${TMPDIR:-/tmp}/bench-gpu-hf HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 MPLBACKEND=Agg
[ -n "${DEADLINE_S:-}" ] && ARGS+=(--deadline "$DEADLINE_S")
[ -n "${PARTS:-}" ] && ARGS+=(--parts "$PARTS")
"$PY" benchmarks/gpu/check.py "${ARGS[@]}"
