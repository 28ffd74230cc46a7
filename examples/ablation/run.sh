#!/usr/bin/env bash
# Diffusion ablations at a fixed wall-clock budget on this machine (issue 11): every variant starts
# from the same fresh U-Net and the same latents, trains for $MINUTES, and is scored on the same
# held-out clips by examples/diffusion_probe.py (matched vs. shuffled captions).
#   examples/ablation/run.sh DATA/synth RUNS [MINUTES]
set -euo pipefail
data=$1 runs=$2 minutes=${3:-6}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python}
base_cfg=models/jen1-demo/config.json
mkdir -p "$runs"

# 1. The shared start: the bundled codec, its whitening refitted on the training clips, a fresh
#    U-Net (seed 0), and the latent cache.
if [ ! -f "$runs/base/checkpoints/whitening.done" ]; then
  "$py" - "$runs/base0" <<'PY'
import sys, torch
from jen1cli.model import Jen1Model
from jen1cli.modules.unet import OmniUNet1d
model = Jen1Model.from_pretrained("models/jen1-demo")
torch.manual_seed(0)
model.unet = OmniUNet1d(model.config.unet)
model.save_pretrained(sys.argv[1])
PY
  jen1 train "$data/train" --output "$runs/base" --config "$base_cfg" --init-from "$runs/base0" \
    --stage whitening --latent-cache --batch-size 16 --quiet
fi

# 2. The variants: name, config changes, then extra train flags.
variant() {
  local name=$1 changes=$2; shift 2
  local run="$runs/$name"
  [ -f "$run/probe.json" ] && return 0
  "$py" "$here/make_variant.py" "$runs/base/config.json" "$runs/$name.json" $changes
  rm -rf "$run"; mkdir -p "$run"; ln -s "$(cd "$runs/base/latents" && pwd)" "$run/latents"
  jen1 train "$data/train" --output "$run" --config "$runs/$name.json" --init-from "$runs/base" \
    --stage diffusion --latent-cache --max-steps 100000 --warmup-steps 100 \
    --max-minutes "$minutes" --log-every 50 "$@" 2> "$run/train.log" || true
  "$py" examples/diffusion_probe.py --model "$run" --audio "$data/heldout" --seconds 4 \
    --limit 48 --out "$run/probe.json"
}

# Two variants at a time, one core each (OMP_NUM_THREADS=1): the same budget for every row, and
# two single-threaded runs use 2 cores better than one run on both.
export OMP_NUM_THREADS=1
variant paper "unet.pooled_text=false diffusion.loss_weighting=uniform" --seconds 10 --batch-size 16 --lr 3e-4 &
variant pooled "unet.pooled_text=true diffusion.loss_weighting=uniform" --seconds 10 --batch-size 16 --lr 3e-4 &
wait
variant pooled-minsnr "unet.pooled_text=true diffusion.loss_weighting=min_snr" --seconds 10 --batch-size 16 --lr 3e-4 &
variant pooled-minsnr-4s "unet.pooled_text=true diffusion.loss_weighting=min_snr" --seconds 4 --batch-size 16 --lr 3e-4 &
wait
variant pooled-minsnr-4s-lr1e-3 "unet.pooled_text=true diffusion.loss_weighting=min_snr" --seconds 4 --batch-size 16 --lr 1e-3 &
variant pooled-minsnr-4s-lr1e-3-b32 "unet.pooled_text=true diffusion.loss_weighting=min_snr" --seconds 4 --batch-size 32 --lr 1e-3 &
wait
