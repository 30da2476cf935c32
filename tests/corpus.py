"""A corpus of bad or odd inputs, generated in code (issue 7). Each entry: (name, path, expectation).

expectation: "ok" (must be processed), "skip" (must be rejected with a one-line reason), or "either" (odd but
legal: either outcome is fine as long as it is clean).
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from synth import scene, write_jpeg

GOOD_GPS = (40.0005, -75.0005)


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG that claims w x h pixels but carries almost no data: the decompression-bomb shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def build_photo_corpus(root: Path) -> list[tuple[str, Path, str]]:
    root.mkdir(parents=True, exist_ok=True)
    base = scene(7, 96)
    out: list[tuple[str, Path, str]] = []

    def add(name: str, expect: str, make) -> None:
        p = root / name
        make(p)
        out.append((name, p, expect))

    g = GOOD_GPS
    add("good.jpg", "ok", lambda p: write_jpeg(p, base, *g))
    add("zero-bytes.jpg", "skip", lambda p: p.write_bytes(b""))
    add("truncated.jpg", "skip", lambda p: p.write_bytes(write_jpeg(root / ".t.jpg", scene(8, 128), *g).read_bytes()[:300]))
    add("random-bytes.jpg", "skip", lambda p: p.write_bytes(np.random.default_rng(1).bytes(5000)))
    add("text-named.heic", "skip", lambda p: p.write_text("this is not a HEIC file\n"))
    add("text-named.png", "skip", lambda p: p.write_text("hello"))
    add("alpha.png", "either", lambda p: Image.new("RGBA", (64, 48), (10, 200, 30, 90)).save(p))
    add("palette.png", "either", lambda p: base.convert("P").save(p))
    add("sixteen-bit.png", "either", lambda p: Image.fromarray(np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)).save(p))
    add("grayscale.jpg", "ok", lambda p: write_jpeg(p, base.convert("L"), *g))
    add("cmyk.jpg", "ok", lambda p: base.convert("CMYK").save(p, "JPEG"))
    add("bomb-30000.png", "skip", lambda p: _png_header_only(p, 30000, 30000))
    add("one-pixel.jpg", "either", lambda p: write_jpeg(p, Image.new("RGB", (1, 1), "red"), *g))
    add("gps-refs-missing.jpg", "either", lambda p: write_jpeg(p, base, raw_gps={2: (40.0, 0.0, 0.0), 4: (75.0, 0.0, 0.0)}))
    add("gps-ref-invalid.jpg", "either", lambda p: write_jpeg(p, base, raw_gps={1: "Q", 2: (40.0, 0.0, 0.0), 3: "W", 4: (75.0, 0.0, 0.0)}))
    add("gps-zero-denominator.jpg", "either", lambda p: write_jpeg(
        p, base, raw_gps={1: "N", 2: (IFDRational(40, 0), IFDRational(0, 0), IFDRational(0, 0)), 3: "W", 4: (75.0, 0.0, 0.0)}))
    add("gps-zero-zero.jpg", "either", lambda p: write_jpeg(p, base, 0.0, 0.0))
    add("gps-out-of-range.jpg", "either", lambda p: write_jpeg(p, base, raw_gps={1: "N", 2: (95.0, 0.0, 0.0), 3: "W", 4: (75.0, 0.0, 0.0)}))
    add("no-exif.jpg", "either", lambda p: base.save(p, "JPEG"))
    add("orientation-8.jpg", "ok", lambda p: write_jpeg(p, base, *g, orientation=8))
    add("orientation-bogus.jpg", "ok", lambda p: write_jpeg(p, base, *g, orientation=42))
    add("nul-padded-model.jpg", "ok", lambda p: write_jpeg(p, base, *g, make="samsung", model="SM-A315F\x00\x00\x00"))
    add("name with spaces.jpg", "ok", lambda p: write_jpeg(p, base, *g))
    add("ünïcødé-名前.jpg", "ok", lambda p: write_jpeg(p, base, *g))
    add("png-content.jpg", "either", lambda p: base.save(p, "PNG"))
    add("jpeg-content.png", "either", lambda p: write_jpeg(p, base, *g))
    add("trailing-garbage.jpg", "either", lambda p: p.write_bytes(write_jpeg(root / ".g.jpg", base, *g).read_bytes() + b"\0garbage" * 50))
    add("wide-4000x8.jpg", "either", lambda p: write_jpeg(p, Image.new("RGB", (4000, 8), "blue"), *g))
    add("one-bit.png", "either", lambda p: base.convert("1").save(p))
    add("la-mode.png", "either", lambda p: base.convert("LA").save(p))
    add("float-tiff.tif", "either", lambda p: Image.fromarray(np.random.default_rng(2).random((32, 32)).astype(np.float32)).save(p))
    add("bmp-named.jpg", "either", lambda p: base.save(p, "BMP"))
    add("gif-file.gif", "either", lambda p: base.convert("P").save(p, "GIF"))
    add("webp-file.webp", "either", lambda p: base.save(p, "WEBP"))
    add("header-only.jpg", "skip", lambda p: p.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"))
    add("html-named.jpg", "skip", lambda p: p.write_text("<html><body>not a photo</body></html>"))
    add("all-black.jpg", "either", lambda p: write_jpeg(p, Image.new("RGB", (64, 64)), *g))
    add("dir-named.jpg", "skip", lambda p: p.mkdir())
    add("symlink-good.jpg", "either", lambda p: os.symlink(root / "good.jpg", p))
    add("symlink-broken.jpg", "skip", lambda p: os.symlink(root / "does-not-exist.jpg", p))
    try:
        import pillow_heif  # noqa: F401

        add("real.heic", "ok", lambda p: base.save(p, "HEIF"))
    except Exception:  # pragma: no cover - HEIF encoder missing
        pass
    for hidden in (".t.jpg", ".g.jpg"):
        (root / hidden).unlink(missing_ok=True)
    return out


def build_csv_corpus(root: Path, image: str) -> dict[str, str]:
    """Label files with bad values; `image` names a real photo in root/images."""
    return {
        "nan-inf-range.csv": f"image,Latitude,Longitude\n{image},nan,1\n{image},inf,2\n{image},95,3\n{image},1,-200\n",
        "missing-columns.csv": f"image,Latitude\n{image},40\n",
        "renamed-columns.csv": f"photo,y,x\n{image},40,-75\n",
        "duplicate-rows.csv": f"image,Latitude,Longitude\n{image},40,-75\n{image},40,-75\n",
        "missing-files.csv": "image,Latitude,Longitude\nnot-there.jpg,40,-75\n",
        "empty.csv": "",
        "header-only.csv": "image,Latitude,Longitude\n",
        "zero-zero.csv": f"image,Latitude,Longitude\n{image},0,0\n",
        "traversal.csv": "image,Latitude,Longitude\n../../../../etc/passwd,40,-75\n",
        "binary.csv": "\x00\x01\x02\xff\xfe",
    }
