"""Makes the format fixtures of tests/formats.rs, and Pillow's decode of each as the reference.

Usage: python tests/formats.py OUTDIR R,G,B

For every variant it writes OUTDIR/NAME.EXT and OUTDIR/NAME.rgb: Pillow's first frame, turned
upright by its EXIF orientation (ImageOps.exif_transpose), alpha composited over the background
R,G,B, as 8-bit RGB. OUTDIR/manifest.json lists {name, file, width, height}. The pictures are cut
from tests/fixtures/baseline_444.jpg; what Pillow cannot write (bit depths, tRNS, interlacing,
16-bit RGB, tiles, RLE, top-down rows) is written here by hand, byte by byte.
"""
import io
import json
import os
import struct
import sys
import zlib

from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1]
BG = tuple(int(v) for v in sys.argv[2].split(","))
W, H = 97, 61

base = Image.open(os.path.join(HERE, "fixtures", "baseline_444.jpg")).convert("RGB")
base = base.resize((W, H), Image.LANCZOS)
# Alpha: a left-to-right ramp, a fully transparent block and a fully opaque one.
alpha = Image.linear_gradient("L").rotate(90).resize((W, H))
alpha.paste(0, (5, 5, 30, 25))
alpha.paste(255, (60, 30, 90, 55))
rgba = base.copy()
rgba.putalpha(alpha)
gray = base.convert("L")

manifest = []


def reference(im):
    """Pillow's picture: first frame, upright, alpha over BG, 8-bit RGB."""
    im.seek(0)
    im.load()
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow clips 16-bit gray to 255 when converting; qp scales it. Scale here too.
        vals = im.tobytes("raw", "I;16") if im.mode != "I" else None
        if vals is not None:
            px = struct.unpack("<%dH" % (im.width * im.height), vals)
        else:
            px = list(im.getdata())
        im = Image.frombytes("L", im.size, bytes(round(v / 257) for v in px))
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        over = Image.new("RGBA", im.size, BG + (255,))
        over.alpha_composite(im.convert("RGBA"))
        return over.convert("RGB")
    return im.convert("RGB")


def add(name, ext, data, refused=None):
    """`refused`: the cause qp gives where Pillow decodes (listed in the README)."""
    path = os.path.join(OUT, name + "." + ext)
    with open(path, "wb") as f:
        f.write(data)
    if refused:
        manifest.append({"name": name, "file": name + "." + ext, "refused": refused})
        return
    ref = reference(Image.open(path))
    with open(os.path.join(OUT, name + ".rgb"), "wb") as f:
        f.write(ref.tobytes())
    manifest.append({"name": name, "file": name + "." + ext,
                     "width": ref.width, "height": ref.height})


def saved(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def exif_orientation(tag):
    e = Image.Exif()
    e[0x0112] = tag
    return e.tobytes()


# ---------------------------------------------------------------------------------------- PNG
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def pack_row(samples, depth):
    if depth == 16:
        return b"".join(struct.pack(">H", v) for v in samples)
    if depth == 8:
        return bytes(samples)
    per = 8 // depth
    out = bytearray()
    for i in range(0, len(samples), per):
        byte = 0
        group = samples[i:i + per]
        for j, v in enumerate(group):
            byte |= v << (8 - depth * (j + 1))
        out.append(byte)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def png(pixels, w, h, ctype, depth, plte=None, trns=None, interlace=False, exif=None):
    """pixels[y][x] is a tuple of samples."""
    raw = bytearray()
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        xs = range(x0, w, dx)
        if not xs:
            continue
        for y in range(y0, h, dy):
            raw.append(0)
            raw += pack_row([s for x in xs for s in pixels[y][x]], depth)
    out = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 1 if interlace else 0))
    if exif:
        out += chunk(b"eXIf", exif)
    if plte:
        out += chunk(b"PLTE", bytes(c for rgb in plte for c in rgb))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    return out + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b"")


rgb_px = [[base.getpixel((x, y)) for x in range(W)] for y in range(H)]
rgba_px = [[rgba.getpixel((x, y)) for x in range(W)] for y in range(H)]
gray_px = [[(gray.getpixel((x, y)),) for x in range(W)] for y in range(H)]
for depth in (1, 2, 4, 8, 16):
    top = (1 << depth) - 1
    px = [[(round(p[0] * top / 255),) for p in row] for row in gray_px]
    add(f"png_gray{depth}", "png", png(px, W, H, 0, depth))
add("png_gray8_trns", "png", png(gray_px, W, H, 0, 8, trns=struct.pack(">H", gray_px[0][0][0])))
add("png_rgb8", "png", png(rgb_px, W, H, 2, 8))
add("png_rgb16", "png", png([[tuple(v * 256 + (x & 0xFF) for v in p) for x, p in enumerate(row)]
                             for row in rgb_px], W, H, 2, 16))
add("png_rgb8_trns", "png", png(rgb_px, W, H, 2, 8, trns=struct.pack(">HHH", *rgb_px[0][0])))
la = [[(g[0], a[3]) for g, a in zip(grow, arow)] for grow, arow in zip(gray_px, rgba_px)]
add("png_la8", "png", png(la, W, H, 4, 8))
add("png_la16", "png", png([[tuple(v * 257 for v in p) for p in row] for row in la], W, H, 4, 16))
add("png_rgba8", "png", png(rgba_px, W, H, 6, 8))
add("png_rgba16", "png", png([[tuple(v * 257 for v in p) for p in row] for row in rgba_px],
                             W, H, 6, 16))
add("png_rgb8_interlaced", "png", png(rgb_px, W, H, 2, 8, interlace=True))
add("png_rgba16_interlaced", "png", png([[tuple(v * 257 for v in p) for p in row]
                                         for row in rgba_px], W, H, 6, 16, interlace=True))
for depth in (1, 2, 4, 8):
    q = base.quantize(colors=1 << depth)
    plte = [tuple(q.getpalette()[i * 3:i * 3 + 3]) for i in range(1 << depth)]
    px = [[(q.getpixel((x, y)),) for x in range(W)] for y in range(H)]
    add(f"png_palette{depth}", "png", png(px, W, H, 3, depth, plte=plte))
    if depth in (2, 8):
        trns = bytes(min(255, i * 255 // max(1, (1 << depth) - 1)) for i in range(1 << depth))
        add(f"png_palette{depth}_trns", "png",
            png(px, W, H, 3, depth, plte=plte, trns=trns, interlace=depth == 8))
# Stored turned: orientation 6 turns it upright again.
turned = base.transpose(Image.ROTATE_90)
add("png_exif6", "png", png([[turned.getpixel((x, y)) for x in range(H)] for y in range(W)],
                            H, W, 2, 8, exif=exif_orientation(6)))

# --------------------------------------------------------------------------------------- WebP
add("webp_lossy", "webp", saved(base, "WEBP", quality=80))
add("webp_lossless", "webp", saved(base, "WEBP", lossless=True))
add("webp_lossy_alpha", "webp", saved(rgba, "WEBP", quality=80))
add("webp_lossless_alpha", "webp", saved(rgba, "WEBP", lossless=True))
add("webp_exif6", "webp", saved(base.transpose(Image.ROTATE_90), "WEBP", quality=90,
                                exif=exif_orientation(6)))
second = ImageOps.invert(base)
add("webp_animated", "webp", saved(base, "WEBP", save_all=True, append_images=[second],
                                   duration=100, lossless=True))
add("webp_animated_alpha", "webp", saved(rgba, "WEBP", save_all=True,
                                         append_images=[second.convert("RGBA")], duration=100,
                                         quality=90))

# ---------------------------------------------------------------------------------------- GIF
pal = base.quantize(colors=255)
add("gif", "gif", saved(pal, "GIF", interlace=False))
add("gif_interlaced", "gif", saved(pal, "GIF", interlace=True))
holed = pal.copy()
holed.paste(255, (5, 5, 30, 25))
add("gif_transparent", "gif", saved(holed, "GIF", transparency=255))
add("gif_animated", "gif", saved(pal, "GIF", save_all=True,
                                 append_images=[second.quantize(colors=200)], duration=100))
add("gif_gray", "gif", saved(gray, "GIF"))


# ---------------------------------------------------------------------------------------- BMP
def bmp(w, h, bpp, rows, palette=(), compression=0, top_down=False):
    """rows: the pixel rows as stored (bottom-up unless top_down), already padded."""
    data = b"".join(rows)
    pal = b"".join(bytes((b, g, r, 0)) for r, g, b in palette)
    offset = 14 + 40 + len(pal)
    info = struct.pack("<IiiHHIIiiII", 40, w, -h if top_down else h, 1, bpp, compression,
                       len(data), 2835, 2835, len(palette), 0)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + pal + data


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


bgr_rows = [pad4(b"".join(bytes((b, g, r)) for r, g, b in row)) for row in rgb_px]
add("bmp_rgb24", "bmp", saved(base, "BMP"))
add("bmp_rgba32", "bmp", saved(rgba, "BMP"))
add("bmp_gray8", "bmp", saved(gray, "BMP"))
add("bmp_palette8", "bmp", saved(base.quantize(colors=256), "BMP"))
add("bmp_1bit", "bmp", saved(gray.convert("1"), "BMP"))
add("bmp_top_down", "bmp", bmp(W, H, 24, bgr_rows, top_down=True))
add("bmp_rgb555", "bmp", bmp(W, H, 16, [
    pad4(b"".join(struct.pack("<H", (r >> 3) << 10 | (g >> 3) << 5 | b >> 3) for r, g, b in row))
    for row in reversed(rgb_px)]))
q16 = base.quantize(colors=16)
plte16 = [tuple(q16.getpalette()[i * 3:i * 3 + 3]) for i in range(16)]
add("bmp_palette4", "bmp", bmp(W, H, 4, [
    pad4(bytes((q16.getpixel((x, y)) << 4) | (q16.getpixel((x + 1, y)) if x + 1 < W else 0)
               for x in range(0, W, 2))) for y in reversed(range(H))], palette=plte16))
q = base.quantize(colors=256)
plte = [tuple(q.getpalette()[i * 3:i * 3 + 3]) for i in range(256)]
rle = []
for y in reversed(range(H)):
    row = [q.getpixel((x, y)) for x in range(W)]
    x = 0
    while x < W:
        n = 1
        while x + n < W and n < 255 and row[x + n] == row[x]:
            n += 1
        rle.append(bytes((n, row[x])))
        x += n
    rle.append(b"\0\0")
rle[-1] = b"\0\1"
add("bmp_rle8", "bmp", bmp(W, H, 8, rle, palette=plte, compression=1))


# --------------------------------------------------------------------------------------- TIFF
def tiff(w, h, spp, bits, extra_samples, tiles=None, photometric=2, data_of=None):
    """Uncompressed little-endian TIFF; strips (one per row) or `tiles` (tw, th)."""
    blocks = data_of()
    entries = []
    header_len = 8
    body = bytearray()

    def put(b):
        at = header_len + len(body)
        body.extend(b)
        if len(body) % 2:
            body.append(0)
        return at

    offsets = [put(b) for b in blocks]
    counts = [len(b) for b in blocks]
    bps_at = put(struct.pack("<%dH" % spp, *([bits] * spp)))
    off_at = put(struct.pack("<%dI" % len(offsets), *offsets))
    cnt_at = put(struct.pack("<%dI" % len(counts), *counts))
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, spp, bps_at), (259, 3, 1, 1),
               (262, 3, 1, photometric), (277, 3, 1, spp), (284, 3, 1, 1)]
    if tiles:
        entries += [(322, 3, 1, tiles[0]), (323, 3, 1, tiles[1]),
                    (324, 4, len(offsets), off_at), (325, 4, len(counts), cnt_at)]
    else:
        entries += [(273, 4, len(offsets), off_at), (278, 4, 1, 1), (279, 4, len(counts), cnt_at)]
    if extra_samples:
        entries.append((338, 3, 1, extra_samples))
    entries.sort()
    ifd_at = header_len + len(body)
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if count == 1 and kind == 3:
            ifd += struct.pack("<HHIHH", tag, kind, count, value, 0)
        elif count == 1 or (count > 1):
            ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += b"\0\0\0\0"
    return b"II*\0" + struct.pack("<I", ifd_at) + bytes(body) + ifd


def tile_blocks(px, tw, th, sample_bytes):
    blocks = []
    for ty in range(0, H, th):
        for tx in range(0, W, tw):
            b = bytearray()
            for y in range(ty, ty + th):
                for x in range(tx, tx + tw):
                    p = px[y][x] if y < H and x < W else (0,) * len(px[0][0])
                    b += sample_bytes(p)
            blocks.append(bytes(b))
    return blocks


add("tiff_rgb8", "tif", saved(base, "TIFF"))
for comp in ("tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg"):
    add(f"tiff_{comp.replace('tiff_', '').replace('adobe_', '')}", "tif",
        saved(base, "TIFF", compression=comp))
add("tiff_gray8", "tif", saved(gray, "TIFF", compression="tiff_lzw"))
add("tiff_palette", "tif", saved(base.quantize(colors=64), "TIFF", compression="packbits"),
    refused="unsupported: palette TIFF")
add("tiff_rgba8", "tif", saved(rgba, "TIFF", compression="tiff_adobe_deflate"))
add("tiff_gray16", "tif", saved(gray.convert("I").point(lambda v: v * 257).convert("I;16"), "TIFF"))
add("tiff_exif6", "tif", saved(base.transpose(Image.ROTATE_90), "TIFF", tiffinfo={274: 6}))
add("tiff_rgb16", "tif", tiff(W, H, 3, 16, None, data_of=lambda: [
    b"".join(struct.pack("<HHH", *(v * 257 for v in p)) for p in row) for row in rgb_px]))
add("tiff_tiled", "tif", tiff(W, H, 3, 8, None, tiles=(32, 16), data_of=lambda: tile_blocks(
    rgb_px, 32, 16, bytes)))
add("tiff_tiled_rgba", "tif", tiff(W, H, 4, 8, 2, tiles=(16, 16), data_of=lambda: tile_blocks(
    rgba_px, 16, 16, bytes)))

with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump(manifest, f)
print(len(manifest), "fixtures in", OUT, file=sys.stderr)
