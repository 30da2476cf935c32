"""rerank's camera stage on a tiny synthetic gallery with gallery headings; the query's own EXIF is never read."""
import io

import numpy as np
import pandas as pd
import pytest

from img2gps.data import load_dataset
from img2gps.localization.pose import angle_diff_deg
from img2gps.predictors import make_predictor
from rerank_synth import pil, textured, turned
from synth import gps_exif, offset

SPEC = "rerank:max_side=400:features=600:vlad=8:topn=4:max_verify=6"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """6 scenes 40 m apart, 3 views each; gallery photos carry a heading column (scene s faces 50 * s deg)."""
    root = tmp_path_factory.mktemp("pose-gallery")
    (root / "images").mkdir()
    rows = []
    for s in range(6):
        base = textured(300 + s)
        for v in range(3):
            img = base if v == 0 else turned(base, 77 * s + v, max_deg=4.0)  # turned at one spot
            name = f"scene{s}_view{v}.jpg"
            pil(img).save(root / "images" / name, quality=92)
            lat, lon = offset(40.0 * s, 0.5 * v)
            rows.append((name, lat, lon, (50.0 * s) % 360, 26.0))
    pd.DataFrame(rows, columns=["image", "Latitude", "Longitude", "heading", "focal35"]).to_csv(
        root / "labels.csv", index=False)
    ds = load_dataset(root)
    held = [i for i, n in enumerate(ds.ids) if n.endswith("view2.jpg")]
    p = make_predictor(SPEC)
    p.fit(ds.exclude_ids([ds.ids[i] for i in held]))
    return ds, held, p


def jpeg_with_exif(img: np.ndarray, lat, lon, direction) -> bytes:
    buf = io.BytesIO()
    pil(img).save(buf, "JPEG", quality=92, exif=gps_exif(lat, lon, direction=direction, focal35=26).tobytes())
    return buf.getvalue()


def test_recognised_views_get_a_heading_near_their_gallery_views(fitted):
    ds, held, p = fitted
    assert p.gallery["heading"].notna().all()
    for i, q in zip(held, p.predict([ds.read(i) for i in held])):
        s = int(ds.ids[i][5])
        assert q.recognised and q.source in ("consensus", "pose")
        # the views differ by a pure rotation of a few degrees at most
        assert q.heading_deg is not None and angle_diff_deg(q.heading_deg, 50.0 * s) < 10
    unknown = p.predict([pil(textured(999))])[0]
    assert unknown.source == "fallback" and unknown.heading_deg is None and unknown.heading_radius_deg is None


def test_changing_the_query_exif_gps_or_direction_changes_nothing(fitted):
    ds, held, p = fitted
    img = np.asarray(ds.open(held[1]))
    a = p.predict([jpeg_with_exif(img, 40.0, -75.0, 10.0)])[0]
    b = p.predict([jpeg_with_exif(img, -33.0, 151.0, 250.0)])[0]
    c = p.predict([jpeg_with_exif(img, None, None, None)])[0]
    assert a.recognised and a.heading_deg is not None
    assert a.to_dict() == b.to_dict() == c.to_dict()


def test_pose_option_is_validated():
    from img2gps.errors import ModelError

    with pytest.raises(ModelError, match="pose must be"):
        make_predictor("rerank:pose=maybe")
    assert make_predictor("rerank").config.pose == "auto"


def test_library_api_passes_the_query_focal_length(fitted, tmp_path):
    from img2gps.api import Img2GPS

    ds, held, p = fitted
    p.save(tmp_path / "m")
    m = Img2GPS.load(tmp_path / "m")
    img = np.asarray(ds.open(held[1]))
    data = jpeg_with_exif(img, 40.0, -75.0, 10.0)
    a, b = m.predict(data), p.predict([data])[0]
    assert a.heading_deg == pytest.approx(b.heading_deg) and a.source == b.source


def test_each_pair_pose_is_computed_once_per_query(fitted, monkeypatch):
    """parallax (which decides recognised) and the camera fix read the same relative poses: one per pair."""
    from collections import Counter

    import img2gps.localization.camera as camera

    ds, held, p = fitted
    real, calls = camera.relative_pose, Counter()

    def counting(pg, pq, *a, **k):
        calls[pg.tobytes() + pq.tobytes()] += 1
        return real(pg, pq, *a, **k)

    monkeypatch.setattr(camera, "relative_pose", counting)
    for i in held[:2]:
        calls.clear()
        q = p.predict([ds.read(i)])[0]
        assert q.recognised and q.heading_deg is not None
        assert calls and max(calls.values()) == 1, calls.values()


def test_heading_radius_widens_when_the_focal_length_is_assumed(fitted):
    from img2gps.localization.pose import unknown_focal_margin_deg

    m = unknown_focal_margin_deg(400, 300)  # 4:3: ~33.7 deg half-view at 26 mm, ~15.0 deg at 65 mm
    assert 17 < m < 20 and unknown_focal_margin_deg(300, 400) == pytest.approx(m)
    assert unknown_focal_margin_deg(400, 300, max_zoom=1.0) == 0
    ds, held, p = fitted
    img = np.asarray(ds.open(held[0]))
    with_focal = p.predict([jpeg_with_exif(img, None, None, None)])[0]  # EXIF focal length 26 mm
    buf = io.BytesIO()
    pil(img).save(buf, "PNG")  # the same pixels, no metadata
    without = p.predict([buf.getvalue()])[0]
    cal = p.state.calibrations[0].heading_radius
    assert with_focal.heading_deg is not None and without.heading_deg is not None
    assert cal is not None  # calibrated on the gallery photos (whose focal lengths are known)
    assert with_focal.heading_radius_deg == cal
    assert without.heading_radius_deg == pytest.approx(cal + unknown_focal_margin_deg(*img.shape[1::-1]))
