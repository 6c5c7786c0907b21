#!/usr/bin/env bash
# Builds the benchmark corpora under bench/corpus (idempotent):
#   photos/  the distinct wallpapers of Debian's plasma-workspace-wallpapers, largest version of
#            each (up to 5120x2880); PNG-only ones are converted to JPEG (quality 90)
#   small/   ~500x375 JPEGs (quality 90): crops of downscaled photos, 24 per photo
#   imagenet/ 400 ImageNet-like JPEGs: 250-500 px on the longer side (ImageNet's median is about
#            500x375), 4:2:0, quality 75-95, cut from the photos at random scales and places
#   small-png/, small-webp/  small/ re-encoded by Pillow as PNG (default settings) and as lossy
#            WebP (quality 80): the formats issue's corpora
# Needs: plasma-workspace-wallpapers, python3 with Pillow (scripts/setup installs both).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/corpus"
python="${QP_PYTHON:-${QP_VENV:-$HOME/.cache/qp-venv}/bin/python}"
[ -x "$python" ] || python=python3
if [ -f "$out/.done" ] && [ -f "$out/.imagenet-done" ] && [ -f "$out/.formats-done" ]; then exit 0; fi
if [ ! -f "$out/.done" ]; then
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
fi
if [ ! -f "$out/.imagenet-done" ]; then
rm -rf "$out/imagenet"; mkdir -p "$out/imagenet"
"$python" - "$out" <<'PY'
import glob, os, random, sys
from PIL import Image
out = sys.argv[1]
random.seed(7)
photos = sorted(glob.glob(os.path.join(out, 'photos', '*.jpg')))
for i in range(400):
    im = Image.open(photos[i % len(photos)])
    im.draft('RGB', (im.width // 4, im.height // 4))  # a quick, already smaller source
    im = im.convert('RGB')
    long_side = random.randint(250, 500)
    aspect = random.choice([4 / 3, 3 / 2, 1.0, 16 / 9, 5 / 4])
    w, h = long_side, max(1, round(long_side / aspect))
    if random.random() < 0.3:
        w, h = h, w  # portrait
    # Cut a region 1-3x the output size and shrink it: natural detail at the output's scale.
    f = random.uniform(1.0, 3.0)
    cw, ch = min(im.width, round(w * f)), min(im.height, round(h * f))
    x, y = random.randint(0, im.width - cw), random.randint(0, im.height - ch)
    tile = im.crop((x, y, x + cw, y + ch)).resize((w, h), Image.LANCZOS)
    tile.save(os.path.join(out, 'imagenet', f'n{i:04d}.jpg'),
              quality=random.randint(75, 95), subsampling=2)
PY
touch "$out/.imagenet-done"
fi
rm -rf "$out/small-png" "$out/small-webp"; mkdir -p "$out/small-png" "$out/small-webp"
"$python" - "$out" <<'PY'
import glob, os, sys
from PIL import Image
out = sys.argv[1]
for f in sorted(glob.glob(os.path.join(out, 'small', '*.jpg'))):
    name = os.path.basename(f)[:-4]
    im = Image.open(f).convert('RGB')
    im.save(os.path.join(out, 'small-png', name + '.png'))
    im.save(os.path.join(out, 'small-webp', name + '.webp'), quality=80)
PY
touch "$out/.formats-done"
echo "corpus: $(ls "$out/photos" | wc -l) photos, $(ls "$out/small" | wc -l) small, $(ls "$out/imagenet" | wc -l) ImageNet-like, $(ls "$out/small-png" | wc -l) PNG, $(ls "$out/small-webp" | wc -l) WebP images in $out" >&2
