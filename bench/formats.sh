#!/usr/bin/env bash
# qp resize against Pillow on the small corpus re-encoded as PNG and as lossy WebP (bench/corpus.sh:
# small-png/, small-webp/, 720 images of ~500x375), one thread, 224x224 fit: Pillow decodes,
# thumbnail()s and saves a JPEG at quality 90 (bench/pillow_thumbnail.py), as qp does. The ratio
# is the median of alternating pairs (bench/paired.py). Also the decode alone, qp's decoders
# (examples/decode.rs) against Pillow's Image.load(), alternating the same way.
# Needs what bench/resize.sh needs. Run by hand: bench/formats.sh [PAIRS]   (default 15)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
pairs="${1:-15}"
source "$here/common.sh"
cp -r "$here/corpus/small-png" "$here/corpus/small-webp" "$work/"
if [ -z "${QP_BIN:-}" ]; then (cd "$root" && cargo build --release --quiet --example decode); fi
decode="${CARGO_TARGET_DIR:-$root/target}/release/examples/decode"
for kind in png webp; do
  dir="$work/small-$kind"
  "$python" "$here/paired.py" "$pairs" "$work/out" "small $kind, 1 thread, qp time / Pillow time (decode, thumbnail, save JPEG q90)" \
    -- "$qp" resize --mode fit --size 224x224 --jobs 1 --out "$work/out" "$dir" \
    -- "$python" "$here/pillow_thumbnail.py" 1 "$work/out" "$dir"/*."$kind"
  if [ -x "$decode" ]; then
    "$python" "$here/paired.py" "$pairs" "$work/out" "small $kind, decode alone, qp time / Pillow time" \
      -- "$decode" 8 "$dir" \
      -- "$python" -c 'import sys; from PIL import Image; [Image.open(f).load() for f in sys.argv[1:]]' "$dir"/*."$kind"
  fi
done
