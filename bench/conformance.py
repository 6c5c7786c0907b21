#!/usr/bin/env python3
"""JPEG conformance: qp's verdict and picture against libjpeg-turbo's, file by file.

The reference verdict for a file is what libjpeg-turbo makes of it: Pillow's decode (Pillow
uses libjpeg-turbo) says whether it decodes and gives the picture; `djpeg` (libjpeg-turbo's
own tool) names the warnings Pillow does not show. A file the reference decodes only by filling
in damaged data (djpeg: "premature end of data segment", "bad Huffman code", restart markers out
of sequence, inconsistent progression) is one qp must refuse. A file Pillow calls truncated is
one qp must refuse as truncated, unless only its EOI marker is missing (the same file with an
EOI appended decodes without a warning), which qp may decode.

qp runs on every file at six output sizes that make it decode at 8/8, 6/8, 5/8, 4/8, 2/8 and
1/8 scale (`--mode fit`, the box floor(side * s / 8)); each picture is compared, as PSNR, with
libjpeg-turbo's decode at the same scale (its DCT scaling: Pillow's draft() at 1/8, 1/4 and
1/2, `djpeg -scale N/8` at 5/8 and 6/8), EXIF-transposed and resized to the same
size with Pillow's bicubic. Outputs under 32 pixels on a side are not compared, and scales whose
box exceeds qp's largest output side (16384) are not run.

Categories, per file: matching; refused by both; crash (qp died, or said "internal error");
wrong picture (PSNR under the bound); refused where the reference decodes; grey from damaged
data (qp gave a picture of a file the reference refuses or decodes only by filling in);
inconsistent across scales (not the same verdict at every scale); not a JPEG (skipped).

    bench/conformance.py [--qp PATH] [--psnr DB] [--verbose] DIR_OR_FILE...

Exit 1 if any file falls in a failing category (crash, wrong picture, refused where the
reference decodes, grey from damaged data, inconsistent across scales), else 0.
"""
import argparse
import io
import math
import os
import shutil
import subprocess
import sys
import tempfile

from PIL import Image, ImageFile, ImageOps

Image.MAX_IMAGE_PIXELS = None

DAMAGE = (
    "premature end of data segment",
    "bad huffman code",
    "bad arithmetic code",
    "instead of rst",
    "inconsistent progression",
)
SCALES = (8, 6, 5, 4, 2, 1)  # output = s/8 of the source
MAX_SIDE = 16384  # qp's largest output side
TINY = 32  # outputs with a shorter side are not compared: a few pixels differ by rounding alone
FAILING = (
    "crash",
    "wrong picture",
    "refused where the reference decodes",
    "grey from damaged data",
    "inconsistent across scales",
)


def djpeg_warnings(data):
    """libjpeg-turbo's warnings for `data`, lower-cased; None when djpeg is absent."""
    if not shutil.which("djpeg"):
        return None
    # -v three times: libjpeg prints only the first warning below trace level 3, and a file's
    # first warning ("extraneous bytes") can hide the damage after it.
    try:
        r = subprocess.run(
            ["djpeg", "-v", "-v", "-v", "-outfile", os.devnull],
            input=data, capture_output=True, timeout=20,
        )
    except subprocess.TimeoutExpired:
        # Tracing every marker of a hostile file can take long: the first warning, then.
        r = subprocess.run(["djpeg", "-outfile", os.devnull], input=data, capture_output=True,
                           timeout=120)
    return "\n".join(ln for ln in r.stderr.decode("utf-8", "replace").lower().splitlines()
                     if "corrupt" in ln or "premature" in ln or "inconsistent" in ln)


def pillow_decode(data, draft=None):
    """(picture, error): the EXIF-transposed RGB picture, or Pillow's error text. `draft`: a
    size to let libjpeg-turbo's DCT scaling (1/2, 1/4, 1/8) shrink the decode towards."""
    try:
        im = Image.open(io.BytesIO(data))
        fmt = im.format
        if draft:
            im.draft("RGB", draft)
        im.load()
    except Exception as e:  # noqa: BLE001 - any failure is the reference refusing
        return None, f"{type(e).__name__}: {e}", None
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a broken EXIF block: qp keeps the picture upright too
        pass
    return im.convert("RGB"), None, fmt


def djpeg_scaled(data, eighths):
    """libjpeg-turbo's own decode at `eighths`/8 (its DCT scaling, which Pillow's draft() has only
    at 1/8, 1/4 and 1/2), EXIF-transposed RGB; None where djpeg is absent or fails."""
    if not shutil.which("djpeg"):
        return None
    try:
        r = subprocess.run(["djpeg", "-scale", f"{eighths}/8", "-ppm"], input=data,
                           capture_output=True, timeout=120)
        # Exit status 2 is a warning (extraneous bytes, say): the picture is still whole.
        if r.returncode not in (0, 2) or not r.stdout:
            return None
        im = Image.open(io.BytesIO(r.stdout))
        im.load()
    except Exception:  # noqa: BLE001
        return None
    # The file's EXIF on the picture, so that Pillow's own exif_transpose turns it as
    # pillow_decode turns Pillow's decode.
    try:
        im.info["exif"] = Image.open(io.BytesIO(data)).info.get("exif") or b""
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a broken EXIF block: the picture stays as stored
        pass
    return im.convert("RGB")


def reference(data):
    """('decodes', picture) | ('refuses', why) | ('damaged', why) | ('truncated', picture|None)
    | ('not a JPEG', format)."""
    try:
        fmt = Image.open(io.BytesIO(data)).format
    except Exception:  # noqa: BLE001
        fmt = None
    if fmt not in (None, "JPEG", "MPO"):
        return "not a JPEG", fmt
    pic, err, _ = pillow_decode(data)
    warnings = djpeg_warnings(data) or ""
    if pic is None:
        if "truncated" in err.lower():
            # Only the EOI missing? The same data with one appended must decode cleanly.
            fixed = data + b"\xff\xd9"
            pic2, err2, _ = pillow_decode(fixed)
            w2 = djpeg_warnings(fixed) or ""
            clean = pic2 is not None and not any(d in w2 for d in DAMAGE) and "premature end" not in w2
            return "truncated", pic2 if clean else None
        return "refuses", err
    hit = [d for d in DAMAGE if d in warnings]
    if hit:
        return "damaged", hit[0]
    return "decodes", pic


def run_qp(qp, path, box, out_dir):
    """(ok, message, picture or None) for one qp resize of `path` into `box`."""
    cmd = [qp, "resize", path, "--out", out_dir, "--mode", "fit", "--quality", "100",
           "--size", f"{box[0]}x{box[1]}", "--max-pixels", "1000000000"]
    r = subprocess.run(cmd, capture_output=True, timeout=300)
    err = r.stderr.decode("utf-8", "replace")
    if r.returncode not in (0, 1):
        return "crash", f"exit {r.returncode}: {err.strip()[-300:]}", None
    if "internal error" in err:
        return "crash", err.strip()[-300:], None
    outs = [os.path.join(dp, f) for dp, _, fs in os.walk(out_dir) for f in fs]
    if r.returncode == 0 and outs:
        with Image.open(outs[0]) as im:
            pic = im.convert("RGB")
        for o in outs:
            os.unlink(o)
        return "ok", "", pic
    # The cause, without the path: "file: cause" (qp's per-file line).
    lines = [ln for ln in err.splitlines() if ": " in ln and path in ln]
    cause = lines[0].split(path, 1)[1].lstrip(": ").strip() if lines else err.strip()[-200:]
    return "refused", cause, None


def psnr(a, b):
    if a.size != b.size:
        return -1.0
    ha, hb = a.tobytes(), b.tobytes()
    n = len(ha)
    se = sum((x - y) * (x - y) for x, y in zip(ha, hb))
    if se == 0:
        return 99.0
    return 10 * math.log10(255 * 255 * n / se)


def psnr_fast(a, b):
    try:
        import numpy as np
    except ImportError:
        return psnr(a, b)
    if a.size != b.size:
        return -1.0
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return 99.0 if mse == 0 else 10 * math.log10(255 * 255 / mse)


def judge(qp, path, bound, tmp):
    data = open(path, "rb").read()
    kind, ref = reference(data)
    if kind == "not a JPEG":
        return "not a JPEG", f"{ref} image"
    size = None
    if kind in ("decodes",) or (kind == "truncated" and ref is not None):
        size = ref.size
    else:
        # A size to ask for: the header's, through Pillow if it gets that far.
        try:
            size = Image.open(io.BytesIO(data)).size
        except Exception:  # noqa: BLE001
            size = (64, 64)
        if min(size) < 1:
            size = (64, 64)
    results = []
    for s in SCALES:
        box = (max(1, size[0] * s // 8), max(1, size[1] * s // 8))
        if max(box) > MAX_SIDE:
            continue  # no qp output is that large
        results.append((s, box) + run_qp(qp, path, box, tmp))
    crash = [r for r in results if r[2] == "crash"]
    if crash:
        return "crash", crash[0][3]
    verdicts = {(r[2], r[3] if r[2] == "refused" else "") for r in results}
    if len(verdicts) > 1:
        return "inconsistent across scales", "; ".join(
            f"{r[0]}/8: {r[2]} {r[3]}".strip() for r in results)
    status, cause = results[0][2], results[0][3]
    if kind in ("refuses", "damaged"):
        if status == "refused":
            return "refused by both", cause
        return "grey from damaged data", f"reference: {ref}"
    if kind == "truncated":
        if status == "refused":
            return ("refused by both", cause) if "truncated" in cause else (
                "refused by both", cause)
        if ref is None:
            return "grey from damaged data", "the reference says truncated"
    if status == "refused":
        return "refused where the reference decodes", cause
    worst = 99.0
    for s, box, _, _, pic in results:
        if pic is None or min(pic.size) < TINY:
            continue
        # The reference at the same scale: libjpeg-turbo's DCT scaling (Pillow's draft where
        # it has the scale, else djpeg's), then Pillow's bicubic (Catmull-Rom, qp's filter)
        # for the last step to the box. (A full decode shrunk by bicubic is no reference at
        # 5/8 or 6/8: on sharp synthetic pictures it differs from DCT scaling by 10 dB and
        # more; rgb.jpg of jpeg-decoder's tests scored 22 dB against it, 35 dB against djpeg.)
        scaled = djpeg_scaled(data, s) if s in (5, 6) else None
        if scaled is None:
            scaled, _, _ = pillow_decode(data, draft=box if s < 8 else None)
        scaled = scaled or ref
        want = scaled if scaled.size == pic.size else scaled.resize(pic.size, Image.BICUBIC)
        worst = min(worst, psnr_fast(pic, want))
    if worst < bound:
        return "wrong picture", f"{worst:.1f} dB"
    return "matching", f"{worst:.1f} dB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qp", default=os.environ.get("QP_BIN", "target/release/qp"))
    ap.add_argument("--psnr", type=float, default=30.0)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args()
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    files = []
    for p in a.paths:
        if os.path.isdir(p):
            for dp, _, fs in os.walk(p):
                files += [os.path.join(dp, f) for f in fs
                          if not f.endswith((".md", ".tsv", ".txt"))]
        else:
            files.append(p)
    files.sort()
    counts = {}
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            cat, detail = judge(a.qp, f, a.psnr, tmp)
            counts[cat] = counts.get(cat, 0) + 1
            bad = cat in FAILING
            failed += bad
            if bad or a.verbose:
                print(f"{'FAIL' if bad else 'ok  '} {cat:38} {f}: {detail}", flush=True)
    print(f"\n{len(files)} files:")
    order = ("matching", "refused by both", "not a JPEG") + FAILING
    for c in order:
        print(f"  {counts.get(c, 0):4}  {c}")
    print(f"conformance: {len(files) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
