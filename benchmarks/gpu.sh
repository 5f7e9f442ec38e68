#!/usr/bin/env bash
# benchmarks/gpu.sh: bertctl's GPU figures in one go (issue #15), at most ~8 minutes on one
# H100/H200. Each step prints a RESULT line; a summary table closes the run.
#
#   benchmarks/gpu.sh [--wheels DIR] [--out DIR] [--quick] [--no-install]
#
#   --wheels DIR   install what is missing from this folder only (pip --no-index
#                  --find-links DIR): for air-gapped clusters; see README, "GPU"
#   --out DIR      where the logs, runs and results.txt go (default runs/bench-gpu-<time>)
#   --quick        tiny sizes even on a GPU (a smoke test of the script itself)
#   --no-install   use the Python environment as it is (no pip at all)
#   PYTHON=...     the interpreter (default python3): the cluster's, with its CUDA torch
#
# The cluster's own torch, transformers, accelerate and peft are used as they are: the
# project goes in with `pip install --no-deps -e .`, so pip never replaces them. Without
# CUDA the script says so, runs every step as a tiny CPU dry run and exits 0 (the test
# suite does that: tests/test_gpu_path.py). A step whose package is absent (deepspeed,
# bitsandbytes, ...) is skipped with one line; the exit code is 1 only if a step failed.

set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS="" OUT="" QUICK=0 INSTALL=1
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) WHEELS=${2:?--wheels needs a folder}; shift 2 ;;
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --no-install) INSTALL=0; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1. See benchmarks/gpu.sh --help"; exit 2 ;;
    esac
done
if [ -n "$WHEELS" ] && [ ! -d "$WHEELS" ]; then
    echo "error: --wheels $WHEELS is not a folder. Fill one with pip download (README, 'GPU')"; exit 2
fi
if ! "$PY" -c "import torch, transformers, accelerate" 2>/dev/null; then
    echo "error: $PY cannot import torch, transformers and accelerate. Use the cluster's Python (PYTHON=...)"; exit 2
fi
OUT=${OUT:-runs/bench-gpu-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
RESULTS="$OUT/results.txt"
: > "$RESULTS"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

# ------------------------------------------------------------------------ install
if [ "$INSTALL" = 1 ]; then
    "$PY" -m pip install -q --no-deps -e . || { echo "error: pip install --no-deps -e . failed"; exit 2; }
    for pkg in $("$PY" benchmarks/gpu_report.py missing); do
        # bitsandbytes and deepspeed declare torch as a dependency: --no-deps, so pip cannot
        # go looking for another torch; their own small dependencies are listed in the README
        extra="" deps=""
        case "$pkg" in
            bitsandbytes) extra="--no-deps" ;;  # its other needs (numpy, packaging) come with the stack
            deepspeed) extra="--no-deps --no-build-isolation"  # a source archive, built against this torch
                       deps="hjson ninja py-cpuinfo msgpack psutil einops packaging tqdm" ;;
        esac
        for d in $deps; do
            "$PY" -c "import importlib.metadata as m; m.version('$d')" 2>/dev/null && continue
            if [ -n "$WHEELS" ]; then "$PY" -m pip install -q --no-index --find-links "$WHEELS" "$d" >/dev/null 2>&1
            else "$PY" -m pip install -q "$d" >/dev/null 2>&1; fi
        done
        if [ -n "$WHEELS" ]; then
            "$PY" -m pip install -q --no-index --find-links "$WHEELS" $extra "$pkg" >/dev/null 2>&1 \
                || echo "note: $pkg is not installable from $WHEELS: the steps needing it are skipped"
        else
            "$PY" -m pip install -q $extra "$pkg" >/dev/null 2>&1 \
                || echo "note: could not pip install $pkg (offline? use --wheels DIR): the steps needing it are skipped"
        fi
    done
fi

if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    GPU=1
    "$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"
else
    GPU=0
    echo "no CUDA GPU here: every step runs as a tiny CPU dry run (no figures), then exit 0"
fi
BIG=$(( GPU == 1 && QUICK == 0 ))

# ------------------------------------------------------------------------ steps
FAILED=0
LIMIT=120

# lim CMD...: CMD under the current step's time limit (each command of a step gets it)
lim() { timeout "$LIMIT" "$@"; }

# step NAME SECONDS FUNCTION ARGS...: run it (output in $OUT/NAME.log), keep its RESULT
# lines; a step that exits non-zero or prints no RESULT line failed
step() {
    local name=$1 before rc; LIMIT=$2; shift 2
    echo "== $name"
    before=$(grep -c '^RESULT' "$RESULTS")
    local t0=$SECONDS
    "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    grep '^RESULT' "$OUT/$name.log" | sed "s/\$/ seconds=$((SECONDS - t0))/" | tee -a "$RESULTS"
    if [ "$rc" != 0 ] || [ "$(grep -c '^RESULT' "$RESULTS")" = "$before" ]; then
        local why="exit code $rc"; [ "$rc" = 124 ] && why="over its ${LIMIT}s limit"
        echo "RESULT $name status=failed reason=${why// /_} log=$OUT/$name.log" | tee -a "$RESULTS"
        tail -n 5 "$OUT/$name.log" | sed 's/^/    /'
        FAILED=1
    fi
}

# skip NEED [NAME]: true (after one line and a RESULT line) when the step lacks a package
skip() {
    local line
    if line=$("$PY" benchmarks/gpu_report.py need "$@"); then return 1; fi
    echo "$line" | tail -n 1
    echo "$line" | grep '^RESULT' >> "$RESULTS"
    return 0
}

if [ "$BIG" = 1 ]; then
    PRE=(--hidden 768 --layers 12 --heads 12 --intermediate 3072 --length 128 --batch-size 128 --steps 500
         --docs 8000 --lr 5e-4 --warmup 0.1 --eval-sequences 512)
    FT=(--rows 8000 --epochs 1 --batch-size 32 --seeds 1)
    SMALL=(data.world.train=8000 data.world.dev=500 train.max_steps=300 train.lr=5e-4)
    DIST=(data.world.train=2000 data.world.dev=300 train.max_steps=40 train.save_every=10)
else
    PRE=(--hidden 32 --layers 1 --heads 2 --intermediate 64 --length 32 --batch-size 8 --steps 3 --docs 150
         --eval-sequences 16 --peak-tflops 1)  # CPU: no MFU to speak of, so no 2 s matmul to measure it
    FT=(--rows 48 --dev-rows 32 --batch-size 16 --max-length 32 --seeds 1)
    SMALL=(data.world.train=48 data.world.dev=32 train.max_steps=3 model.max_length=32)
    DIST=(data.world.train=48 data.world.dev=32 train.max_steps=4 train.save_every=2 model.max_length=32)
fi
# every fine-tuning step: the embedded MiniLM, World sentiment data (offline), precision auto (bf16 on
# Ampere and newer, fp16 with loss scaling before), all checkpoints kept
FTBASE=(--task cls model.name_or_path=minilm train.precision=auto train.keep_checkpoints=null)
LAUNCH=("$PY" -m accelerate.commands.launch --num_processes 1 --num_machines 1)

# 1. pretraining throughput vs run_mlm.py's Trainer recipe; bertctl auto, the Trainer in bf16 (asked:
# its fp32 default would flatter the ratio on a GPU), MFU against each side's precision's peak
pretrain() { lim "$PY" benchmarks/pretrain_throughput.py "${PRE[@]}" --baseline-precision bf16; }
skip pretrain pretrain_throughput || step pretrain_throughput $((BIG ? 300 : 120)) pretrain

# 2. fine-tuning throughput vs Trainer + DataCollatorWithPadding; bertctl auto, the Trainer in bf16
finetune() { lim "$PY" benchmarks/finetune_throughput.py "${FT[@]}" --no-pad128 --baseline-precision bf16; }
skip finetune finetune_throughput || step finetune_throughput $((BIG ? 150 : 120)) finetune

# 3. LoRA and QLoRA (4-bit NF4, bitsandbytes' CUDA kernels): a few hundred steps, dev accuracy
adapters() {  # METHOD
    local quant=()
    [ "$1" = qlora ] && quant=(quant.bits=4 quant.quant_type=nf4 quant.compute_dtype=auto)
    lim "$PY" -m bertctl finetune "${FTBASE[@]}" method="$1" "${quant[@]}" "${SMALL[@]}" --out "$OUT/runs/$1" &&
        "$PY" benchmarks/gpu_report.py finetune "$1" "$OUT/runs/$1"
}
skip lora || step lora $((BIG ? 120 : 120)) adapters lora
skip qlora || step qlora $((BIG ? 150 : 120)) adapters qlora

# 4. accelerate launch, one process: FSDP2 and DeepSpeed ZeRO-2, each with checkpoints and
# --resume. FSDP2: the run is trained to the end, then a copy cut back to its first
# checkpoint is resumed and must end with the same dev metrics. ZeRO-2: the recipe's batch,
# accumulation and clipping reach DeepSpeed's config; bertctl keeps no DeepSpeed optimizer
# state, so --resume of the cut copy must refuse with its one-line error (docs/scaling.md).
launched() {  # NAME CONFIG EXPECT PATH (accelerate's distributed type, checked on a GPU)
    local name=$1 config=$2 expect=$3 want=$4 full="$OUT/runs/$1" cut="$OUT/runs/$1-resumed" rc first c
    lim "${LAUNCH[@]}" --config_file "$config" -m bertctl finetune "${FTBASE[@]}" "${DIST[@]}" --out "$full" || return 1
    # a copy cut back to its first checkpoint, as a run killed there leaves it (a finished run has
    # nothing to resume, so only a cut copy tests what --resume does)
    rm -rf "$cut" && cp -r "$full" "$cut"
    first=$(ls "$cut/checkpoints" | sort | head -n 1)
    for c in "$cut"/checkpoints/*; do [ "$(basename "$c")" = "$first" ] || rm -rf "$c"; done
    rm -rf "$cut/model" "$cut/metrics.json"
    # its stderr kept beside the folder: a refused --resume writes nothing into the run folder
    lim "${LAUNCH[@]}" --config_file "$config" -m bertctl finetune "${FTBASE[@]}" "${DIST[@]}" --out "$cut" --resume \
        2>"$cut.stderr"
    rc=$?
    cat "$cut.stderr" >&2
    [ "$GPU" = 1 ] || want=""  # on a CPU accelerate runs these configs as plain one-process jobs
    "$PY" benchmarks/gpu_report.py resume "$name" "$full" "$cut" "$rc" "$expect" "$want"
}
skip fsdp2 accelerate_fsdp2 || step accelerate_fsdp2 $((BIG ? 150 : 180)) launched accelerate_fsdp2 docs/accelerate/fsdp.yaml same FSDP
skip zero2 accelerate_zero2 || step accelerate_zero2 $((BIG ? 150 : 180)) launched accelerate_zero2 docs/accelerate/deepspeed_zero2.yaml refused DEEPSPEED

# ------------------------------------------------------------------------ summary
echo
"$PY" benchmarks/gpu_report.py summary "$RESULTS" "$([ "$GPU" = 1 ] && echo gpu || echo dry)"
echo "logs and runs: $OUT (RESULT lines in $RESULTS)"
if [ "$GPU" = 0 ]; then
    echo "dry run on CPU: the figures above are not GPU figures"
fi
exit "$FAILED"
