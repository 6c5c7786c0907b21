#!/usr/bin/env bash
# qp against Pillow on ImageNet-like inputs (bench/corpus.sh's imagenet/: 400 JPEGs, 250-500 px
# on the longer side, 4:2:0, quality 75-95), one thread, 224x224 in fit and in fill mode; and
# the full-scale decode alone, qp (examples/decode.rs) against Pillow's (libjpeg-turbo's) in one
# process each. Every figure is the median of alternating pairs (bench/paired.py), same run.
# Needs: what bench/resize.sh needs. Run by hand: bench/imagenet.sh [runs]   (env QP_BIN, as there)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
runs="${1:-5}"
source "$here/common.sh"
cp -r "$here/corpus/imagenet" "$work/"
dir="$work/imagenet"
pairs=$((runs * 6 + 1))
(cd "$root" && cargo build --release --quiet --example decode)
decode="${CARGO_TARGET_DIR:-$root/target}/release/examples/decode"

for mode in fit fill; do
  pillow=("$python" "$here/pillow_thumbnail.py" 1 "$work/out")
  [ "$mode" = fill ] && pillow+=(--fill)
  "$python" "$here/paired.py" "$pairs" "$work/out" "imagenet, 224x224 $mode, 1 thread, qp time / Pillow time" \
    -- "$qp" resize --mode "$mode" --size 224x224 --jobs 1 --out "$work/out" "$dir" \
    -- "${pillow[@]}" "$dir"/*.jpg
done
"$python" "$here/paired.py" "$pairs" "$work/out" "imagenet, full-scale decode alone, qp time / Pillow (libjpeg-turbo) time" \
  -- "$decode" 8 "$dir" -- "$python" -c 'import sys
from PIL import Image
for f in sys.argv[1:]:
    Image.open(f).load()' "$dir"/*.jpg
echo "goals (1 thread): fit and fill <= 0.30x Pillow"
