"""The original blueprint's image path: Pillow Image.thumbnail((224, 224)) + save, per file.

usage: pillow_thumbnail.py JOBS OUTDIR [--fill] FILE...   (JOBS=1: serial in this process)

--fill: cover 224x224 and centre-crop (qp's fill mode) as a careful Pillow user would: draft()
first (libjpeg-turbo's 1/2..1/8 DCT scaling, the smallest that still covers the crop), then
ImageOps.fit with Pillow's default bicubic filter.
"""
import os
import sys
from multiprocessing import Pool

from PIL import Image, ImageOps

OUT = sys.argv[2]
FILL = len(sys.argv) > 3 and sys.argv[3] == "--fill"
SIZE = (224, 224)


def convert(path):
    with Image.open(path) as im:
        if FILL:
            w, h = im.size
            s = max(SIZE[0] / w, SIZE[1] / h)
            im.draft("RGB", (max(1, round(w * s)), max(1, round(h * s))))
            im = ImageOps.fit(im, SIZE, Image.BICUBIC)
        else:
            im.thumbnail(SIZE)
        im.convert("RGB").save(os.path.join(OUT, os.path.basename(path)), "JPEG", quality=90)


if __name__ == "__main__":
    jobs, files = int(sys.argv[1]), sys.argv[4 if FILL else 3:]
    os.makedirs(OUT, exist_ok=True)
    if jobs == 1:
        for f in files:
            convert(f)
    else:
        with Pool(jobs) as pool:
            pool.map(convert, files, chunksize=4)
