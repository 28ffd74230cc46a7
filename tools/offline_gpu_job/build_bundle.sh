#!/usr/bin/env bash
# Build what job.sh needs on a GPU machine with no network, in BUNDLE (default .dev, which should
# be git-ignored: echo /.dev/ >> .git/info/exclude). About 42 MB:
#   fluid.tar.xz      fluidsynth and every shared library it links (glibc excepted)
#   TimGM6mb.sf2      a 6 MB General MIDI soundfont (FluidR3's 148 MB would not fit)
#   site.tar.xz       wheels the GPU image lacks (Python 3.12, manylinux x86-64), unpacked
#   minilm/           the text encoder, compacted (trim_text_encoder.py)
# Needs: apt-get install fluidsynth timgm6mb-soundfont; the jen1 venv active (python = it).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUNDLE=${BUNDLE:-.dev}
COUNT=${COUNT:-3000}
PY=${PY:-python}
rm -rf "$BUNDLE/whl"; mkdir -p "$BUNDLE/whl"  # no wheels of an older build

stage=$(mktemp -d)
mkdir -p "$stage/bin" "$stage/lib"
cp "$(command -v fluidsynth)" "$stage/bin/"
ldd "$(command -v fluidsynth)" | awk '/=>/ {print $3}' \
    | grep -vE 'libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|ld-linux' \
    | xargs -I{} cp -L {} "$stage/lib/"
tar -C "$stage" -cJf "$BUNDLE/fluid.tar.xz" bin lib
rm -rf "$stage"
cp /usr/share/sounds/sf2/TimGM6mb.sf2 "$BUNDLE/"

# Versions as in the jen1 venv; typer >= 0.24 needs pydantic, which the GPU image lacks.
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
wheels=()
for name in diffusers mido pyloudnorm soundfile cffi pycparser typer click rich pydantic \
            pydantic_core annotated-types typing-inspection annotated-doc typing_extensions; do
    wheels+=("$name==$(version "$name")")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$BUNDLE/whl" "${wheels[@]}"

# Unpacked and xz-packed, the wheels take half their zips' room in the 64 MB the job may carry.
site=$(mktemp -d); mkdir "$site/site"
for wheel in "$BUNDLE"/whl/*.whl; do unzip -q -o "$wheel" -d "$site/site"; done
tar -C "$site" -cJf "$BUNDLE/site.tar.xz" site
rm -rf "$site" "$BUNDLE/whl"

"$PY" "$HERE/trim_text_encoder.py" --count "$COUNT" --out "$BUNDLE/minilm"
cp "$HERE/expand_text_encoder.py" "$BUNDLE/"
du -sh "$BUNDLE"
