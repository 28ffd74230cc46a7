#!/usr/bin/env bash
# Diffusion ablations at a fixed wall-clock budget on a 2-core machine (issues 11 and 16).
#
# One core trains the candidate recipe (the "main" run, which goes on afterwards as the bundled
# model's training, keeping EMA snapshots); the other core trains, one after another, the variants
# that each change one thing back, for $MINUTES each. Every run starts from the same fresh U-Net
# and the same latents, and is scored by examples/diffusion_probe.py on the same held-out clips.
# A variant is compared with the main run's snapshot at the same wall-clock time.
#   examples/ablation/run.sh DATA/synth RUNS [MINUTES]
set -euo pipefail
data=$1 runs=$2 minutes=${3:-12}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python}
mkdir -p "$runs"
export OMP_NUM_THREADS=1  # one core per run

# 1. The shared start: the bundled codec, its whitening refitted on the training clips, a fresh
#    U-Net of the demo preset's shape (seed 0), and the latent cache.
if [ ! -f "$runs/base/checkpoints/whitening.done" ]; then
  "$py" - "$runs/base0" <<'PY'
import sys, torch
from jen1cli.model import Jen1Model
from jen1cli.presets import demo_config
shipped = Jen1Model.from_pretrained("models/jen1-demo")
config = demo_config()
if config.autoencoder != shipped.config.autoencoder:
    raise SystemExit("the demo preset's codec differs from the bundled one")
torch.manual_seed(0)
model = Jen1Model(config, shipped.text_encoder)
model.autoencoder.load_state_dict(shipped.autoencoder.state_dict())
model.whitener.load_state_dict(shipped.whitener.state_dict())
model.save_pretrained(sys.argv[1])
PY
  OMP_NUM_THREADS=2 jen1 train "$data/train" --output "$runs/base" \
    --config models/jen1-demo/config.json --init-from "$runs/base0" \
    --stage whitening --latent-cache --batch-size 16 --quiet
fi

# train NAME "CONFIG CHANGES" [MINUTES] [jen1 train flags...]
train() {
  local name=$1 changes=$2 budget=$3; shift 3
  local run="$runs/$name"
  "$py" "$here/make_variant.py" "$runs/base/config.json" "$runs/$name.json" $changes
  rm -rf "$run"; mkdir -p "$run"; ln -s "$(cd "$runs/base/latents" && pwd)" "$run/latents"
  date +%s > "$run/started"
  jen1 train "$data/train" --output "$run" --config "$runs/$name.json" --init-from "$runs/base" \
    --stage diffusion --latent-cache --max-steps 100000 --warmup-steps 100 --log-every 25 \
    --max-minutes "$budget" "$@" 2> "$run/train.log" || true
}
probe() {  # probe RUN [extra probe flags]
  local run=$1; shift
  "$py" examples/diffusion_probe.py --model "$run" --audio "$data/heldout" --seconds 4 \
    --limit 48 "$@"
}

candidate=""  # the demo preset as it is: layer norm, v-prediction, pooled text, min-SNR
flags=(--seconds 4 --batch-size 16 --lr 1e-3)

# 2. The main run, in the background for ${MAIN_MINUTES:-60} minutes (resumable afterwards).
[ -d "$runs/main" ] || train main "$candidate" "${MAIN_MINUTES:-60}" "${flags[@]}" \
  --snapshot-every 25 &

# 3. The variants, one at a time on the other core: each changes one thing back to the paper.
variant() {
  local name=$1; shift
  [ -f "$runs/$name/probe.json" ] && return 0
  train "$name" "$@"
  probe "$runs/$name" --out "$runs/$name/probe.json"
}
# The network fixes of issue 16, one at a time back (earlier rows, issue 11: the model card).
variant rms "unet.norm=rms" "$minutes" "${flags[@]}"
variant epsilon "unet.prediction=epsilon" "$minutes" "${flags[@]}"
variant group "unet.norm=group unet.prediction=epsilon" "$minutes" "${flags[@]}"
wait
