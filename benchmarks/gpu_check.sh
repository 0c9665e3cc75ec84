#!/usr/bin/env bash
# The GPU check: one command for a machine with CUDA, under 8 minutes.
#
#   benchmarks/gpu_check.sh OUT_DIR            # CUDA: ViT-B/16 bf16, every visible GPU
#   benchmarks/gpu_check.sh OUT_DIR --tiny     # CPU smoke run (ViT-Tiny, 64 px); CUDA-only parts say they are skipped
#
# Writes OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md:
#   1. MAE ViT-B/16 bf16 step time and images/s, omnissl and lightly side by side (lightly==1.6.*,
#      `make bench-deps`), torch.compile on and off, model FLOPs utilisation (benchmarks/gpu_check.py);
#   2. the same step under DDP on every visible GPU (torchrun, omnissl's own DDP wrapping);
#   3. splat grouping's share of a Gaussian-MAE step (benchmarks/splat_group.py, issue 5);
#   4. the I-JEPA and iBOT steps, omnissl and lightly side by side, on CUDA
#      (benchmarks/objective_step.py, issue 15).
# Nothing is downloaded: models start from random weights, data are random tensors.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 OUT_DIR [--tiny]" >&2
    exit 2
fi
OUT=$1
TINY=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-$(command -v python)}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"

GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [ "$GPUS" = 0 ] && [ "$TINY" != "--tiny" ]; then
    echo "gpu_check: no CUDA device is visible; this check needs one (run with --tiny for a CPU smoke run)" >&2
    exit 1
fi

echo "== 1. one process: omnissl vs lightly, compile on/off, MFU" | tee -a "$LOG"
timeout 300 "$PY" "$HERE/gpu_check.py" --out "$OUT" $TINY 2>&1 | tee -a "$LOG"

echo "== 2. DDP on every visible GPU" | tee -a "$LOG"
if [ "$GPUS" -ge 1 ] && [ "$TINY" != "--tiny" ]; then
    timeout 240 "$PY" -m torch.distributed.run --standalone --nproc-per-node "$GPUS" "$HERE/gpu_check.py" \
        --ddp "$OUT/ddp.json" 2>&1 | tee -a "$LOG"
else
    echo "skipped: DDP over GPUs needs CUDA; a 2-process gloo run of the same code instead" | tee -a "$LOG"
    OMP_NUM_THREADS=1 timeout 150 "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 \
        "$HERE/gpu_check.py" --ddp "$OUT/ddp.json" --tiny 2>&1 | tee -a "$LOG"
fi

echo "== 3. splat grouping's share of a step" | tee -a "$LOG"
if [ "$GPUS" -ge 1 ] && [ "$TINY" != "--tiny" ]; then
    timeout 120 "$PY" "$HERE/splat_group.py" --rounds 3 2>&1 | tee "$OUT/splat.txt" | tee -a "$LOG" || true
else
    echo "skipped: the share is measured on CUDA only" | tee "$OUT/splat.txt" | tee -a "$LOG"
fi

echo "== 4. I-JEPA and iBOT steps, omnissl vs lightly" | tee -a "$LOG"
if [ "$GPUS" -ge 1 ] && [ "$TINY" != "--tiny" ]; then
    timeout 150 "$PY" "$HERE/objective_step.py" --device cuda --steps 10 --warmup 3 2>&1 \
        | tee "$OUT/objective_step.txt" | tee -a "$LOG" || true
else
    OMP_NUM_THREADS=1 timeout 150 "$PY" "$HERE/objective_step.py" --quick --device cpu 2>&1 \
        | tee "$OUT/objective_step.txt" | tee -a "$LOG" || true
fi

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
single = json.loads((out / "single.json").read_text())
ddp = json.loads((out / "ddp.json").read_text()) if (out / "ddp.json").is_file() else None
splat = [line.strip() for line in (out / "splat.txt").read_text().splitlines() if "share" in line or "%" in line]
objective = [line.strip() for line in (out / "objective_step.txt").read_text().splitlines()
             if "ratio" in line and not line.startswith(" ")]
result = {"device": single["device"], "settings": single["settings"], "bf16": single["bf16"],
          "single": single["single"], "ddp": ddp, "splat": splat, "objective_step": objective}
(out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
s = single["settings"]
lines = [f"GPU check on {single['device']}: MAE ViT-{s['size']}/16 {s['img']} px, batch {s['batch']} per process, "
         f"decoder 512-d x {s['decoder_depth']}, mask 0.75, {'bf16' if single['bf16'] else 'fp32'}, "
         f"median of {s['steps']} steps after {s['warmup']} warm-up", "",
         "| run | step (ms) | images/s | MFU | GFLOP/step |", "|---|---|---|---|---|"]
for name, row in single["single"].items():
    mfu = f"{row['mfu']:.3f}" if row.get("mfu") is not None else "n/a"
    lines.append(f"| {name} | {row['step_ms']:.1f} | {row['images_per_s']:.1f} | {mfu} | {row['flops_per_step'] / 1e9:.1f} |")
if ddp:
    lines.append(f"| omnissl DDP x {ddp['world']} | {ddp['step_ms']:.1f} | {ddp['global_images_per_s']:.1f} (all) | | |")
    if "compile_step_ms" in ddp:
        lines.append(f"| omnissl DDP x {ddp['world']} + compile | {ddp['compile_step_ms']:.1f} | "
                     f"{ddp['compile_images_per_s']:.1f} (all) | | |")
lines += ["", "splat grouping: " + ("; ".join(splat) if splat else "not measured")]
lines += ["latent objectives (objective_step.py): " + ("; ".join(objective) if objective else "not measured")]
rows = single["single"]
if "omnissl" in rows and "lightly" in rows:
    lines.append(f"step-time ratio omnissl/lightly: {rows['omnissl']['step_ms'] / rows['lightly']['step_ms']:.3f}")
(out / "gpu_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
