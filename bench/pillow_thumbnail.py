"""The original blueprint's image path: Pillow Image.thumbnail((224, 224)) + save, per file.

usage: pillow_thumbnail.py JOBS OUTDIR FILE...   (JOBS=1: serial in this process)
"""
import os
import sys
from multiprocessing import Pool

from PIL import Image

OUT = sys.argv[2]


def convert(path):
    with Image.open(path) as im:
        im.thumbnail((224, 224))
        im.convert("RGB").save(os.path.join(OUT, os.path.basename(path)), "JPEG", quality=90)


if __name__ == "__main__":
    jobs, files = int(sys.argv[1]), sys.argv[3:]
    os.makedirs(OUT, exist_ok=True)
    if jobs == 1:
        for f in files:
            convert(f)
    else:
        with Pool(jobs) as pool:
            pool.map(convert, files, chunksize=4)
