"""Colour profiles (issue 30): a photo tagged Display P3 (as iPhones write them) is decoded to sRGB, both as a
query (photos.open_query) and as a gallery photo (photos.open_image), so its colours and embeddings match an
sRGB photo of the same scene. The Display P3 profile is written here from its published primaries."""
from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image, ImageCms

from img2gps.photos import open_image, open_query

D50 = (0.9642, 1.0, 0.8249)
# Display P3 and sRGB primaries adapted to the ICC's D50 (Bradford), columns r, g, b: XYZ = M @ linear RGB
P3_D50 = np.array([[0.515121, 0.291977, 0.157104], [0.241196, 0.692245, 0.066574], [-0.001053, 0.041885, 0.784073]])
SRGB_D50 = np.array([[0.436066, 0.385147, 0.143066], [0.222488, 0.716873, 0.060608], [0.013916, 0.097076, 0.714096]])


def _s15(x: float) -> bytes:
    return struct.pack(">i", round(x * 65536))


def display_p3_icc() -> bytes:
    """A minimal ICC v4 display profile: Display P3 primaries, D65 white (D50-adapted), sRGB's tone curve."""
    def xyz(v):
        return b"XYZ \0\0\0\0" + b"".join(_s15(c) for c in v)
    name = "Display P3".encode("utf-16-be")
    desc = b"mluc\0\0\0\0" + struct.pack(">II2s2sII", 1, 12, b"en", b"US", len(name), 28) + name
    desc += b"\0" * (-len(desc) % 4)
    trc = b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(
        _s15(c) for c in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
    tags = [(b"desc", desc), (b"cprt", desc), (b"wtpt", xyz(D50)), (b"rXYZ", xyz(P3_D50[:, 0])),
            (b"gXYZ", xyz(P3_D50[:, 1])), (b"bXYZ", xyz(P3_D50[:, 2])), (b"rTRC", trc), (b"gTRC", trc),
            (b"bTRC", trc)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x04300000) + b"mntrRGB XYZ " + b"\0" * 12
              + b"acsp" + b"\0" * 24 + struct.pack(">I", 0) + b"".join(_s15(c) for c in D50) + b"\0" * 48)
    assert len(header) == 128
    return header + table + data


def _decode(v):
    v = np.asarray(v, float) / 255
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _encode(v):
    v = np.clip(v, 0, 1)
    return 255 * np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)


def p3_to_srgb(rgb) -> np.ndarray:
    """What a Display P3 colour (0..255) is in sRGB (0..255), through XYZ (D50): the reference the test checks."""
    return _encode(np.linalg.solve(SRGB_D50, P3_D50 @ _decode(rgb)))


COLOURS = [(200, 100, 50), (60, 170, 90), (90, 110, 220)]


def _tagged_jpeg(icc: bytes | None) -> bytes:
    arr = np.zeros((48, 48 * len(COLOURS), 3), np.uint8)
    for i, c in enumerate(COLOURS):
        arr[:, 48 * i:48 * (i + 1)] = c
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=100, subsampling=0, **({"icc_profile": icc} if icc else {}))
    return buf.getvalue()


def _centres(pixels) -> np.ndarray:
    px = np.asarray(pixels)
    h, w = px.shape[:2]
    return np.array([px[h // 2, int(w * (i + 0.5) / len(COLOURS))] for i in range(len(COLOURS))], float)


def test_display_p3_photos_are_decoded_to_srgb_as_query_and_as_gallery_photo():
    icc = display_p3_icc()
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() == "Display P3"
    data = _tagged_jpeg(icc)
    want = np.array([p3_to_srgb(c) for c in COLOURS])
    assert np.abs(want - np.array(COLOURS)).max() > 20  # P3 and sRGB numbers differ a lot for these colours
    for got in (_centres(open_query(data)[0].pixels), _centres(open_image(data)),
                _centres(open_query(data, max_side=72)[0].pixels)):
        assert np.abs(got - want).max() <= 3, (got, want)


def test_srgb_tagged_untagged_and_broken_profiles_leave_the_pixels_alone():
    plain = _centres(open_image(_tagged_jpeg(None)))
    assert np.abs(plain - np.array(COLOURS)).max() <= 2
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for icc in (srgb, b"not an icc profile at all"):
        got = _centres(open_query(_tagged_jpeg(icc))[0].pixels)
        assert np.array_equal(got, plain)


def test_feature_caches_are_keyed_by_the_decode_version(tmp_path):
    """Embeddings and keypoints cached from pixels decoded by older code (e.g. P3 read as sRGB) are not reused."""
    from img2gps.features.cache import FeatureCache
    from img2gps.photos import DECODE_VERSION
    from img2gps.features.rootsift import FeatureConfig

    assert DECODE_VERSION >= 2
    assert f"decode{DECODE_VERSION}" in FeatureConfig().key
    assert FeatureCache("embed-lite0", tmp_path).dir.name == f"embed-lite0-decode{DECODE_VERSION}"
