#!/usr/bin/env bash
# Builds the benchmark corpora under bench/corpus (idempotent):
#   photos/  the distinct wallpapers of Debian's plasma-workspace-wallpapers, largest version of
#            each (up to 5120x2880); PNG-only ones are converted to JPEG (quality 90)
#   small/   ImageNet-like ~500x375 JPEGs: crops of downscaled photos, 24 per photo
# Needs: plasma-workspace-wallpapers, python3 with Pillow (scripts/setup installs both).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/corpus"
python="${QP_PYTHON:-${QP_VENV:-$HOME/.cache/qp-venv}/bin/python}"
[ -x "$python" ] || python=python3
if [ -f "$out/.done" ]; then exit 0; fi
rm -rf "$out"; mkdir -p "$out/photos" "$out/small"
"$python" - "$out" <<'PY'
import glob, os, random, sys
from PIL import Image
out = sys.argv[1]
random.seed(42)
for d in sorted(glob.glob('/usr/share/wallpapers/*/contents/images')):
    name = d.split('/')[-3].lower()
    best = None
    for f in glob.glob(d + '/*'):
        if not f.lower().endswith(('.jpg', '.jpeg', '.png')):
            continue
        try:
            w, h = Image.open(f).size
        except Exception:
            continue
        key = (w * h, f.lower().endswith(('.jpg', '.jpeg')))
        if best is None or key > best[0]:
            best = (key, f)
    if best is None:
        continue
    src = best[1]
    dst = os.path.join(out, 'photos', name + '.jpg')
    if src.lower().endswith('.png'):
        Image.open(src).convert('RGB').save(dst, quality=90)
    else:
        with open(src, 'rb') as a, open(dst, 'wb') as b:
            b.write(a.read())
    im = Image.open(dst).convert('RGB')
    for i in range(24):
        scale = random.choice([1000, 1400, 2000])
        w, h = im.size
        small = im.resize((scale, max(400, round(h * scale / w))), Image.BILINEAR)
        cw, ch = random.choice([(500, 375), (375, 500), (500, 333), (480, 480)])
        x = random.randint(0, max(0, small.width - cw))
        y = random.randint(0, max(0, small.height - ch))
        small.crop((x, y, x + cw, y + ch)).save(
            os.path.join(out, 'small', f'{name}_{i:02d}.jpg'), quality=90)
PY
touch "$out/.done"
echo "corpus: $(ls "$out/photos" | wc -l) photos, $(ls "$out/small" | wc -l) small images in $out" >&2
