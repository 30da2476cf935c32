"""Photos as people share them: the bench's seeded transformations, the query preparation (photo inside a
screenshot, retry views) and rerank's cascade on a tiny synthetic gallery."""
import contextlib
import dataclasses
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from img2gps.data import load_dataset
from img2gps.data.shared_photos import KINDS, ORIGINAL, as_shared, parse_kinds
from img2gps.errors import DataError
from img2gps.evaluate import run_bench
from img2gps.geo import haversine_m
from img2gps.photos import read_focal35
from img2gps.verification.queryprep import CROP_FRACTIONS, centre_crops, clahe, find_photo, retry_views
from rerank_synth import perspective, pil, textured
from synth import gps_exif
from img2gps.predictors.registry import make_predictor
from test_rerank import SPEC, fitted, gallery  # noqa: F401 - the shared rerank fixtures


def camera_jpeg(w: int = 1000, h: int = 750) -> bytes:
    buf = io.BytesIO()
    pil(textured(7, w, h)).save(buf, "JPEG", quality=90,
                                exif=gps_exif(39.95, -75.19, orientation=1, focal35=26, direction=90.0).tobytes())
    return buf.getvalue()


def test_every_kind_is_seeded_and_strips_all_metadata():
    data = camera_jpeg()
    assert read_focal35(data) == 26  # the input has EXIF (GPS, orientation, focal length)
    for kind in KINDS:
        out = as_shared(data, kind, "a.jpg")
        assert out == as_shared(data, kind, "a.jpg")  # the same photo always gets the same transformation
        assert out != as_shared(data, kind, "b.jpg")  # another photo draws other severities
        im = Image.open(io.BytesIO(out))
        assert len(im.getexif()) == 0 and read_focal35(out) is None, kind
    assert as_shared(data, ORIGINAL, "a.jpg") is data


def test_kinds_cover_their_documented_ranges():
    data = camera_jpeg()
    sides = {k: [max(Image.open(io.BytesIO(as_shared(data, k, f"p{i}.jpg"))).size) for i in range(12)]
             for k in ("reencode", "thumbnail", "crop")}
    assert all(720 <= s <= 1400 for s in sides["reencode"]) and np.ptp(sides["reencode"]) > 200
    assert all(400 <= s <= 560 for s in sides["thumbnail"])
    crops = [Image.open(io.BytesIO(as_shared(data, "crop", f"p{i}.jpg"))).size for i in range(6)]
    assert all(w == h for w, h in crops)
    turned = Image.open(io.BytesIO(as_shared(data, "rotated", "p.jpg")))
    assert turned.height > turned.width  # a landscape photo comes back standing on its side
    dark = np.asarray(Image.open(io.BytesIO(as_shared(data, "lowlight", "p.jpg"))).convert("L")).mean()
    assert dark < 0.8 * np.asarray(Image.open(io.BytesIO(data)).convert("L")).mean()


def test_parse_kinds():
    assert parse_kinds("crop,lowlight,crop") == [ORIGINAL, "crop", "lowlight"]
    assert parse_kinds(None) == [ORIGINAL]
    assert parse_kinds("all") == [ORIGINAL, *KINDS]
    with pytest.raises(DataError, match="unknown kind 'sepia'"):
        parse_kinds("crop,sepia")


def post(photo: Image.Image, dark: bool, box_top: int = 220, width: int = 600,
         bg: tuple | None = None) -> tuple[Image.Image, tuple]:
    """A hand-made screenshot: the photo at full width on a light or dark screen (or one of colour bg), with
    text bars."""
    bg_, ink = ((0, 0, 0), (230, 230, 230)) if dark else ((255, 255, 255), (20, 20, 20))
    bg = bg or bg_
    h = int(photo.height * width / photo.width)
    screen = Image.new("RGB", (width, 1300), bg)
    screen.paste(photo.resize((width, h)), (0, box_top))
    d = ImageDraw.Draw(screen)
    for y in (20, 150, box_top + h + 30, box_top + h + 70):
        d.rectangle((20, y, 400, y + 14), fill=ink)
    return screen, (0, box_top, width, box_top + h)


@pytest.mark.parametrize("dark", [False, True])
def test_find_photo_locates_the_photo_in_a_screenshot(dark):
    screen, truth = post(pil(textured(3, 400, 300)), dark)
    r = find_photo(screen)
    assert r is not None
    assert np.abs(np.array(r.as_tuple()) - truth).max() <= 3  # within a few pixels of where it was pasted


def test_find_photo_keeps_a_dark_photo_in_a_dark_app():
    """A black car filling a corner of the photo, shown in a dark-grey app (penn91's one missed screenshot): its
    pixels are near the screen's colour, yet the photo is found whole, to the pixel."""
    a = textured(4, 400, 300)
    a[150:, :260] = np.clip(np.random.default_rng(0).normal(12, 3, (150, 260, 3)), 0, 255)  # touches two edges
    screen, truth = post(pil(a), dark=True, bg=(28, 28, 30))
    r = find_photo(screen)
    assert r is not None
    assert np.abs(np.array(r.as_tuple()) - truth).max() <= 3
    for lo in (24, 10):  # what decides it: content is what differs from the screen by more than content_tol
        assert (find_photo(screen, content_tol=lo) is None) == (lo == 24)


def test_find_photo_leaves_plain_photos_alone():
    assert find_photo(pil(textured(5, 640, 480))) is None
    sky = textured(6, 640, 480)
    sky[:200] = (250, 250, 250)  # a white sky along the top edge is not a border
    assert find_photo(pil(sky)) is None
    assert find_photo(Image.new("RGB", (300, 200), (255, 255, 255))) is None  # nothing inside


def test_retry_views_only_where_they_can_help():
    big = pil(textured(1, 1000, 750))
    assert retry_views(big, 1024, no_metadata=False) == []  # a camera file that did not verify pays nothing
    names = [n for n, _ in retry_views(pil(textured(1, 400, 300)), 1024, no_metadata=True)]
    assert names == ["upsampled", "clahe", "turned 90 clockwise", "turned 90 anticlockwise"]
    views = dict(retry_views(pil(textured(1, 400, 300)), 1024, no_metadata=True))
    assert max(views["upsampled"].size) == 1000 and views["turned 90 clockwise"].size == (750, 1000)
    dark = pil((textured(1, 1000, 750) * 0.2).astype(np.uint8))
    assert [n for n, _ in retry_views(dark, 1024, no_metadata=False)] == ["clahe"]
    assert np.asarray(clahe(dark)).std() > np.asarray(dark).std()  # local contrast restored


PREP = "border+upsample+clahe+rotate"


@contextlib.contextmanager
def prep(p, steps: str):
    """The fitted predictor with its prep option set to `steps` for the duration."""
    saved = p.config
    p.config = dataclasses.replace(saved, prep=steps)
    try:
        yield p
    finally:
        p.config = saved


def test_rerank_locates_the_photo_inside_a_screenshot_and_says_so(fitted):  # noqa: F811
    ds, held, p = fitted
    assert p.config.prep == "none"  # off by default (docs/shared-photos.md)
    i = held[0]
    photo = Image.open(io.BytesIO(ds.read(i))).convert("RGB")
    screen, truth = post(photo, dark=False)
    buf = io.BytesIO()
    screen.save(buf, "PNG")
    with prep(p, PREP):
        q = p.predict([buf.getvalue()])[0]
    assert q.recognised and haversine_m(ds.lat[i], ds.lon[i], q.latitude, q.longitude) < 5
    assert q.query_region is not None and np.abs(np.array(q.query_region) - truth).max() <= 6
    assert q.to_dict()["query_region"] == list(q.query_region)


def test_the_cascade_changes_nothing_for_a_photo_that_verifies(fitted):  # noqa: F811
    ds, held, p = fitted
    got = []
    for steps in (PREP, "none"):
        with prep(p, steps):
            got.append([p.predict([ds.read(i)])[0] for i in held[:3]])
    for a, b in zip(*got):
        assert a.recognised and (a.latitude, a.longitude, a.radius_m) == (b.latitude, b.longitude, b.radius_m)
        assert a.query_region is None and a.query_view is None


def test_centre_crops_are_centred_widest_first_and_not_too_small():
    crops = centre_crops(Image.new("RGB", (1000, 500)))
    assert [f for _, f, _ in crops] == list(CROP_FRACTIONS) and crops[0][0] == "centre crop 60%"
    for _, f, r in crops:
        assert (r.x1 - r.x0, r.y1 - r.y0) == (round(1000 * f), round(500 * f))
        assert abs((r.x0 + r.x1) - 1000) <= 1 and abs((r.y0 + r.y1) - 500) <= 1
    assert centre_crops(Image.new("RGB", (150, 100))) == []  # a 0.6 crop would be 60 px high, under 64


def test_a_photo_in_a_wide_frame_verifies_through_a_centre_crop_and_says_so(fitted):  # noqa: F811
    ds, held, p = fitted
    i = held[0]
    photo = Image.open(io.BytesIO(ds.read(i))).convert("RGB")
    W, H = round(photo.width / 0.3), round(photo.height / 0.3)  # the photo fills the middle 30% of each side
    frame = pil(textured(999, W, H))
    frame.paste(photo, ((W - photo.width) // 2, (H - photo.height) // 2))
    buf = io.BytesIO()
    frame.save(buf, "PNG")
    with prep(p, "none"):
        whole = p.predict([buf.getvalue()])[0]
    assert whole.source == "fallback"  # the whole view does not verify (else this tests nothing)
    with prep(p, "crops"):
        q = p.predict([buf.getvalue()])[0]
    assert q.source in ("consensus", "pose", "scene") and haversine_m(ds.lat[i], ds.lon[i], q.latitude, q.longitude) < 5
    assert q.query_view.startswith("centre crop") and q.query_region is None  # no border was found
    assert q.to_dict()["query_view"] == q.query_view
    with pytest.raises(Exception, match="crops"):
        make_predictor(SPEC + ":prep=crop")  # a misspelt step is refused, naming the valid ones


def test_bench_query_as_gives_one_row_per_method_and_kind(gallery_dir):
    ds = load_dataset(gallery_dir)
    res, preds = run_bench(ds, "kfold:2", ["knn:k=1"], progress=False, query_as=["reencode", "crop"])
    assert [k for k in res["results"] if k != "copy-heading"] == [
        "mean-coordinate", "mean-coordinate as reencode", "mean-coordinate as crop",
        "knn:k=1", "knn:k=1 as reencode", "knn:k=1 as crop"]
    assert len(preds) == 3 * 2 * len(ds) and set(preds.query_as) == {ORIGINAL, "reencode", "crop"}
    orig = preds[(preds.spec == "knn:k=1") & (preds.query_as == ORIGINAL)]
    assert res["results"]["knn:k=1"]["mean_m"] == pytest.approx(orig.error_m.mean())
    row = next(r for r in res["table"] if r["method"] == "knn:k=1" and r["query as"] == "crop")
    crop = res["results"]["knn:k=1 as crop"]
    assert row["mean ratio"] == pytest.approx(crop["mean_m"] / res["results"]["knn:k=1"]["mean_m"])
    assert res["query_as"]["kinds"] == [ORIGINAL, "reencode", "crop"]
    with pytest.raises(DataError):
        parse_kinds("thumbnails")


def test_bench_runs_only_the_folds_asked_for(gallery_dir):
    from img2gps.data.splits import folds_for_protocol

    ds = load_dataset(gallery_dir)
    res, preds = run_bench(ds, "kfold:3", [], progress=False, only_folds=[2])
    fold = folds_for_protocol("kfold:3", ds)[1]
    assert res["folds_run"] == [2] and res["n_folds"] == 3 and res["n"] == len(fold.val)
    assert sorted(preds["image"]) == sorted(ds.ids[i] for i in fold.val)
    with pytest.raises(DataError, match="folds 1..3"):
        run_bench(ds, "kfold:3", [], progress=False, only_folds=[4])
