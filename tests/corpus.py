"""A corpus of bad or odd inputs, generated in code (issue 7). Each entry: (name, path, expectation).

expectation: "ok" (must be processed), "skip" (must be rejected with a one-line reason), or "either" (odd but
legal: either outcome is fine as long as it is clean). BUILD_KEEPS names the photos `data build` must keep (they
carry a usable GPS position) and BUILD_REASONS the reason `data build` must give for a photo it skips.

Issue 14's hunt added the cases marked "(hunt)": each is a kind reported against Pillow, pillow-heif, EXIF readers
or photo managers (GPS refs in lower case or as NUL-padded bytes, DMS stored as one float or degrees only, a GPS
pointer into nowhere, a GPS block with no position, 108 MP phone photos, MPO multi-picture JPEGs, animated WebP,
EXIF orientations 5-7, palette PNGs with transparency, file names that are not UTF-8).
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

BUILD_KEEPS = {"good.jpg", "grayscale.jpg", "orientation-8.jpg", "orientation-bogus.jpg", "nul-padded-model.jpg",
               "name with spaces.jpg", "ünïcødé-名前.jpg", "phone-108mp.jpg", "gps-lowercase-refs.jpg",
               "gps-single-float.jpg", "gps-bytes-refs.jpg", "gps-degrees-only.jpg", "orientation-5.jpg",
               "orientation-6.jpg", "orientation-7.jpg", "mpo-two-frames.jpg", "animated.webp", "latin1-été.jpg"}
BUILD_REASONS = {
    "zero-bytes.jpg": "empty file (0 bytes)",
    "truncated.jpg": "corrupt or truncated",
    "random-bytes.jpg": "unknown or unsupported image format",
    "text-named.heic": "unknown or unsupported image format",
    "bomb-30000.png": "image too large",
    "header-only.jpg": "corrupt or truncated",
    "gps-corrupt-pointer.jpg": "EXIF GPS block is corrupt",
    "gps-pointer-nowhere.jpg": "EXIF GPS block is corrupt",
    "gps-version-only.jpg": "its GPS block holds no latitude/longitude",
    "gps-refs-missing.jpg": "latitude reference N/S missing",
    "gps-ref-invalid.jpg": "latitude reference 'Q' is not N or S",
    "gps-zero-zero.jpg": "(0, 0), a placeholder",
    "no-exif.jpg": "no EXIF metadata",
    "symlink-broken.jpg": "file not found",
    "dir-named.jpg": "is a folder",
}


def corrupt_gps_pointer(im: Image.Image, pointer: int, lat=GOOD_GPS[0], lon=GOOD_GPS[1]) -> bytes:
    """A JPEG whose EXIF GPS-IFD pointer (tag 0x8825) is overwritten with `pointer`: Pillow then warns
    "Corrupt EXIF data" (a pointer into the EXIF block) or silently finds nothing (a pointer past its end)."""
    from synth import gps_exif

    b = bytearray(gps_exif(lat, lon).tobytes())
    base = 6  # after b"Exif\0\0"
    fmt = "<" if b[base:base + 2] == b"II" else ">"
    ifd0 = struct.unpack_from(fmt + "I", b, base + 4)[0]
    for i in range(struct.unpack_from(fmt + "H", b, base + ifd0)[0]):
        off = base + ifd0 + 2 + 12 * i
        if struct.unpack_from(fmt + "H", b, off)[0] == 0x8825:
            struct.pack_into(fmt + "I", b, off + 8, pointer)
    import io

    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, exif=bytes(b))
    return buf.getvalue()


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
    # (hunt) cases from public bug reports
    from synth import gps_exif

    ex = gps_exif(*g).tobytes()
    add("gps-corrupt-pointer.jpg", "ok", lambda p: p.write_bytes(corrupt_gps_pointer(base, 40)))
    add("gps-pointer-nowhere.jpg", "ok", lambda p: p.write_bytes(corrupt_gps_pointer(base, 0xFFFF00)))
    add("gps-version-only.jpg", "ok", lambda p: write_jpeg(p, base, raw_gps={0: b"\x02\x02\x00\x00"}))
    add("gps-lowercase-refs.jpg", "ok", lambda p: write_jpeg(p, base, raw_gps={1: "n", 2: (40.0, 0.0, 1.8), 3: "w", 4: (75.0, 0.0, 1.8)}))
    add("gps-single-float.jpg", "ok", lambda p: write_jpeg(p, base, raw_gps={1: "N", 2: 40.0005, 3: "W", 4: 75.0005}))
    add("gps-bytes-refs.jpg", "ok", lambda p: write_jpeg(p, base, raw_gps={1: b"N\x00", 2: (40.0, 0.0, 1.8), 3: b"W\x00", 4: (75.0, 0.0, 1.8)}))
    add("gps-degrees-only.jpg", "ok", lambda p: write_jpeg(p, base, raw_gps={1: "N", 2: (40.0005,), 3: "W", 4: (75.0005,)}))
    for o in (5, 6, 7):
        add(f"orientation-{o}.jpg", "ok", lambda p, o=o: write_jpeg(p, base.resize((96, 48)), *g, orientation=o))
    add("phone-108mp.jpg", "ok", lambda p: Image.new("RGB", (12000, 9000), (120, 130, 140)).save(p, "JPEG", quality=80, exif=ex))
    add("mpo-two-frames.jpg", "ok", lambda p: base.save(p, "MPO", save_all=True, append_images=[scene(9, 96)], exif=ex))
    add("animated.webp", "ok", lambda p: base.save(p, "WEBP", save_all=True, append_images=[scene(10, 96)], duration=100, exif=ex))
    add("palette-transparency.png", "ok", lambda p: base.convert("P").save(p, transparency=0))
    latin1 = os.fsdecode(b"latin1-\xe9t\xe9.jpg")  # a name that is not UTF-8 on disk (old cameras, Windows zips)
    add(latin1, "ok", lambda p: write_jpeg(p, base, *g))
    try:
        import pillow_heif  # noqa: F401

        add("real.heic", "ok", lambda p: base.save(p, "HEIF"))
    except Exception:  # pragma: no cover - HEIF encoder missing
        pass
    for hidden in (".t.jpg", ".g.jpg"):
        (root / hidden).unlink(missing_ok=True)
    return out


# The label files that `fit` and `bench` must refuse (exit code 2, one "error:" line): nothing usable is left.
# The others keep a usable row and must succeed (exit 0), with the bad rows reported.
CSV_MUST_FAIL = {"nan-inf-range.csv", "missing-columns.csv", "renamed-columns.csv", "missing-files.csv", "empty.csv",
                 "header-only.csv", "zero-zero.csv", "traversal.csv", "binary.csv"}


def build_csv_corpus(root: Path, image: str) -> dict[str, str]:
    """Label files with bad values; `image` names a real photo in root/images."""
    return {
        # (hunt) spreadsheet exports: a byte-order mark, ';' separators and decimal commas; spaces after commas
        "bom-semicolon-decimal-comma.csv": f"\ufeffimage;Latitude;Longitude\n{image};40,0005;-75,0005\n",
        "spaces-after-commas.csv": f"image, Latitude, Longitude\n{image}, 40.0005, -75.0005\n",
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
