#!/usr/bin/env bash
# The recipe of the bundled model (models/jen1-demo): data, then the three `jen1 train` stages.
#
#   bash examples/train_demo.sh WORK_DIR        # needs fluidsynth + timgm6mb-soundfont (apt)
#
# Budgets are wall-clock (--max-minutes), sized for one H200: 3 min autoencoder, 3.4 + 3.5 min
# diffusion. On a slower machine raise them (or --max-steps); a stage cut short by its budget is
# exported and `--resume` continues it. The finished model is WORK_DIR/run.
set -euo pipefail
WORK=${1:?usage: train_demo.sh WORK_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
SOUNDFONT=${SOUNDFONT:-/usr/share/sounds/sf2/TimGM6mb.sf2}
DATA=$WORK/data
RUN=$WORK/run

# 1. 3,000 ten-second training clips (8.3 h) and 80 held-out clips, disjoint by construction.
python "$HERE/make_dataset.py" "$DATA" --count 3000 --heldout 80 --seconds 10 --seed 0 \
    --workers "$(nproc)" --soundfont "$SOUNDFONT"

# 2. Autoencoder: 1 s crops, GAN losses from half-way through the planned steps. The GPU run
#    started it on the first 400 rendered clips while the rest rendered; any 400 do.
mkdir -p "$WORK/ae-data"
head -n 400 "$DATA/train/metadata.jsonl" > "$WORK/ae-data/metadata.jsonl"
for f in $(cut -d'"' -f4 "$WORK/ae-data/metadata.jsonl"); do
    ln -sf "$DATA/train/$f" "$WORK/ae-data/$f"
done
jen1 train "$WORK/ae-data" --output "$RUN" --config demo --stage autoencoder \
    --max-steps 4000 --max-minutes 3.0 --batch-size 48 --autoencoder-lr 6e-4 \
    --adversarial-start 0.5 --warmup-steps 100 --num-workers 8 --log-every 100

# 3. Whitening on every training clip, and the latent cache for the diffusion stage.
jen1 train "$DATA/train" --output "$RUN" --config demo --stage whitening --resume \
    --batch-size 64 --num-workers 8 --latent-cache

# 4. Multi-task diffusion, in two sittings of ~3.5 min (the second resumes the first).
for minutes in 3.4 3.5; do
    jen1 train "$DATA/train" --output "$RUN" --config demo --stage diffusion --resume \
        --latent-cache --max-steps 6000 --max-minutes "$minutes" --batch-size 128 --lr 6e-4 \
        --warmup-steps 200 --log-every 200
done
echo "model folder: $RUN (config.json and *.safetensors go into models/jen1-demo)"
