#!/usr/bin/env bash
# The GPU check: every loop x fp32, tf32, bf16, fp16 x the tutorial's settings and --preset fast,
# bert-base-uncased (random weights), on one GPU, in one command that fits the device lease; then
# the report and the records under $OUT.  Prepare its carried folders first, here:
#   benchmarks/gpu/prepare.sh
# On the device machine (README.md, "The GPU check", gives the exact device call):
#   benchmarks/gpu/run.sh
# Here, the same steps on the CPU with the tiny model (the wheels installed for the device's
# Python 3.12 into a scratch folder, to prove they install; this Python runs on its own packages):
#   benchmarks/gpu/run.sh --dry-run
# Environment: OUT (where the results go; the device tool sets it), PYTHON (default python3 there,
# python here), SWEEP_S (seconds the sweep may take; default 420 there), STEPS / WARMUP (per cell),
# PRESETS (default tutorial,fast; PRESETS=fast runs the second half alone, e.g. in a second call).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$ROOT/runs/gpu-check$([ $DRY = 1 ] && echo -dry-run)}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/bench-gpu-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
LOG=$OUT/check.log
: >"$LOG"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$LOG"; }
for need in .whl .data/gpu/glue/mrpc .data/gpu/bert-base-uncased/vocab.txt; do
    [ -e "$need" ] || { say "missing $need: run benchmarks/gpu/prepare.sh here first (and carry .whl and .data)"; exit 2; }
done

if [ $DRY = 1 ]; then
    PY=${PYTHON:-python}
    DEVICE=cpu; MODEL=(--model tiny); STEPS=${STEPS:-12}; WARMUP=${WARMUP:-2}; SWEEP_S=${SWEEP_S:-3000}
    SIZES=(--train-samples 512 --eval-samples 96)
    say "dry run: --device cpu --model tiny, $STEPS steps a cell"
    # 1. The wheels, installed as the device's Python 3.12 would take them.
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site-py312" \
        --python-version 3.12 --implementation cp --only-binary=:all: --platform manylinux2014_x86_64 .whl/*.whl \
        || { say "the carried wheels do not install for CPython 3.12"; exit 2; }
    export PYTHONPATH=$ROOT
else
    PY=${PYTHON:-python3}
    DEVICE=cuda; MODEL=(--model "$ROOT/.data/gpu/bert-base-uncased" --no-weights)
    STEPS=${STEPS:-60}; WARMUP=${WARMUP:-10}; SWEEP_S=${SWEEP_S:-420}
    SIZES=()
    say "GPU check: --device cuda, bert-base-uncased --no-weights, $STEPS steps a cell"
    # 1. The wheels, into a temporary site ahead of the image's packages.
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
        || { say "pip could not install the carried wheels"; exit 2; }
    export PYTHONPATH=$WORK/site:$ROOT
    nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
fi
say "wheels installed"

# 2. A copy of the MRPC mirror; every cache in the scratch folder; nothing reaches for the Hub.
cp -r .data/gpu/glue "$WORK/glue"
export HF_HOME=$WORK/hf HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
"$PY" -m bench env >"$OUT/env.txt" 2>&1 || { say "bench env failed:"; tail -5 "$OUT/env.txt" | tee -a "$LOG"; exit 2; }
"$PY" -c "import datasets, evaluate, dill, multiprocess, fsspec, torch, transformers, accelerate; print('versions:', *(f'{m.__name__} {m.__version__}' for m in (torch, transformers, accelerate, datasets, evaluate, dill, multiprocess, fsspec)))" 2>&1 | tee -a "$LOG"
say "environment written"

# 3. The sweep: each cell in a process of its own, a cell that hangs killed, the sweep stopped
#    (SIGTERM: what is recorded stays) when its time is up.
set -x
timeout --signal=TERM "$SWEEP_S" "$PY" -m bench run --loops all --device "$DEVICE" --precision all \
    --preset "${PRESETS:-tutorial,fast}" "${MODEL[@]}" --glue-dir "$WORK/glue" "${SIZES[@]}" --max-steps "$STEPS" \
    --timing-warmup "$WARMUP" --cell-timeout 120 --no-progress --out "$WORK/run" >>"$LOG" 2>&1
rc=$?
set +x
say "sweep exit $rc$([ $rc = 124 ] && echo ": stopped at SWEEP_S=$SWEEP_S s, the cells after the last recorded one did not run")"

# 4. The report, and what comes back: at most 8 files (records, report, logs and plots packed).
if [ -s "$WORK/run/results.jsonl" ]; then
    "$PY" -m bench report "$WORK/run" -o "$WORK/run/report.md" >>"$LOG" 2>&1 || say "bench report failed"
    cp "$WORK/run/results.jsonl" "$OUT/"
    [ -f "$WORK/run/report.md" ] && cp "$WORK/run/report.md" "$OUT/"
    (cd "$WORK/run" && tar czf "$OUT/logs-and-plots.tar.gz" logs $(ls *.png 2>/dev/null)) || true
    "$PY" - "$WORK/run/results.jsonl" <<'PYEOF' | tee -a "$LOG"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for r in rows:
    wall, train = r.get("process_wall_s"), r.get("train_wall_s")
    print(f"{r['cell_id']:<40} {r['status']:<8} process {wall or 0:6.1f} s, training {train or 0:6.1f} s, "
          f"{r.get('samples_per_s') or 0:8.1f} samples/s {r.get('reason', '')[:80]}")
ran = [r for r in rows if r.get("process_wall_s")]
print(f"{len(rows)} records, {sum(r['status'] == 'ok' for r in rows)} ok; cells that ran: "
      f"{sum(r['process_wall_s'] for r in ran):.0f} s in their processes, of which training "
      f"{sum(r.get('train_wall_s') or 0 for r in ran):.0f} s")
PYEOF
else
    say "no records: see check.log"
    exit 1
fi
say "done"
