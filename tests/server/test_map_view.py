"""The offline HTML maps (maps.write_map_html: `img2gps demo`, `predict --map`) drawn by headless Chromium and
checked as the user sees them (issue 30): numbered answers and truths readable without hovering, faint circles,
a supporting photo 0 m from the answer still visible, and the far-EXIF label inside the map at desktop and phone
size. Each failed on 559cef9."""
from __future__ import annotations

import numpy as np
import pytest

from _browser import SIZES, chromium, inside, rect, rects, topmost_class
from img2gps.maps import write_map_html
from img2gps.types import Neighbour, Prediction

pytestmark = pytest.mark.slow  # a browser start each (~2 s alone, more under load)


def _open(driver, page):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "var n = document.getElementById('notice'); return n && n.getAttribute('data-tiles') === 'unavailable'"))
    driver.execute_script("return 0")


def _demo_like(n=10, seed=0):
    """n answers with truths in a 150 m area, radii 20-80 m, as the demo's held-out photos."""
    rng = np.random.default_rng(seed)
    lat, lon = 39.9515 + rng.normal(0, 4e-4, n), -75.1915 + rng.normal(0, 4e-4, n)
    preds = [Prediction(float(a + rng.normal(0, 2e-4)), float(b + rng.normal(0, 2e-4)), float(rng.uniform(20, 80)),
                        0.5, False, "rerank") for a, b in zip(lat, lon)]
    return preds, list(zip(lat, lon))


@pytest.mark.parametrize("size", list(SIZES))
def test_demo_map_numbers_answers_and_truths_without_hovering(tmp_path, size):
    preds, truths = _demo_like()
    names = [f"CeciliaChen98__Image2GPS__IMG_71{i:02d}.jpg" for i in range(10)]
    page = write_map_html(tmp_path / "demo_map.html", preds, truths=truths, labels=names, tiles=False)
    with chromium(tmp_path / "profile", size) as d:
        _open(d, page)
        m = rect(d, "#map")
        for kind in ("prediction", "truth"):
            marks = d.execute_script(
                "return Array.from(document.querySelectorAll('.img2gps-num-' + arguments[0]))"
                ".map(function (e) { var r = e.getBoundingClientRect();"
                " var top = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);"
                " return [e.textContent.trim(), r.toJSON(), !!top && e.contains(top),"
                " !!top && !!top.closest('.img2gps-num')]; })", kind)
            assert sorted(int(t) for t, *_ in marks) == list(range(1, 11)), (kind, marks)
            for t, r, _, on_top in marks:
                assert inside(r, m) and 12 <= r["width"] <= 30, (kind, t, r)  # small, on the map
                assert on_top, (kind, t)  # above every circle and line (at worst under another number)
            if size == "desktop":  # room enough that (nearly) every number is seen whole
                assert sum(own for _, _, own, _ in marks) >= 8, marks
        # ten circles stay faint so that the numbers read through them
        ops = d.execute_script("return Array.from(document.querySelectorAll('path.img2gps-radius'))"
                               ".map(function (p) { var s = getComputedStyle(p);"
                               " return [parseFloat(s.strokeOpacity), parseFloat(s.fillOpacity)]; })")
        assert len(ops) == 10 and all(so <= 0.5 and fo <= 0.05 for so, fo in ops), ops


def test_supporting_photo_at_the_answer_is_visible(tmp_path):
    """A supporting photo 0 m from the answer used to hide under the answer's marker."""
    n = [Neighbour("same_spot.jpg", 39.9515, -75.1915, 50.0), Neighbour("other.jpg", 39.9517, -75.1912, 40.0)]
    p = Prediction(39.9515, -75.1915, 25.0, 0.8, True, "rerank", n, source="consensus")
    page = write_map_html(tmp_path / "one.html", [p], tiles=False)
    with chromium(tmp_path / "profile") as d:
        _open(d, page)
        nb = [r for r in rects(d, "path.img2gps-neighbour")]
        pr = rect(d, "path.img2gps-prediction")
        assert len(nb) == 2
        at = min(nb, key=lambda r: abs(r["left"] + r["right"] - pr["left"] - pr["right"]))
        cx, cy = (at["left"] + at["right"]) / 2, (at["top"] + at["bottom"]) / 2
        assert "img2gps-neighbour" in topmost_class(d, cx, cy)  # the photo at the answer is seen ...
        assert "img2gps-prediction" in topmost_class(d, cx, pr["top"] + 1)  # ... and the answer around it


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("far", [(47.6, -122.3), (-33.9, 151.2), (64.1, -21.9), (39.95, -60.0)])
def test_far_exif_label_stays_inside_the_map(tmp_path, size, far):
    """A photo whose own EXIF position is on another continent: the arrow and its label are drawn inside the
    map whichever way it points (the label was cut at the map's edge)."""
    p = Prediction(39.9515, -75.1915, 40.0, 0.5, False, "knn", photo_exif_position=far)
    gallery = __import__("pandas").DataFrame({"image": ["a", "b", "c"], "Latitude": [39.9510, 39.9525, 39.9505],
                                              "Longitude": [-75.1915, -75.1930, -75.1900]})
    page = write_map_html(tmp_path / "far.html", [p], gallery=gallery, labels=["query.jpg"], tiles=False)
    with chromium(tmp_path / "profile", size) as d:
        _open(d, page)
        m = rect(d, "#map")
        label, arrow = rect(d, ".img2gps-exif-far-label"), rect(d, ".img2gps-exif-far")
        assert "off this map" in d.execute_script("return document.querySelector('.img2gps-exif-far-label')"
                                                  ".textContent")
        assert inside(arrow, m) and inside(label, m), (size, far, label, arrow, m)


def test_hovering_a_table_row_brings_out_that_answer(tmp_path):
    """The demo map's table: hovering row i draws answer i in full and fades the others (was: a grep of the page's
    source for `view.focus(`)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    preds, truths = _demo_like(n=3, seed=1)
    page = write_map_html(tmp_path / "m.html", preds, truths=truths, labels=["a", "b", "c"], tiles=False)

    def opacity(d):  # answer number -> the opacity its numbered marker is drawn with
        return dict(d.execute_script(
            "return Array.from(document.querySelectorAll('.img2gps-num-prediction')).map(function (e) {"
            " return [e.textContent.trim(), parseFloat(getComputedStyle(e).opacity)]; })"))

    with chromium(tmp_path / "profile") as d:
        _open(d, page)
        assert opacity(d) == {"1": 1.0, "2": 1.0, "3": 1.0}
        rows = d.find_elements(By.CSS_SELECTOR, "tr[data-item]")
        assert len(rows) == 3
        ActionChains(d).move_to_element(rows[1]).perform()
        got = opacity(d)
        assert got["2"] == 1.0 and got["1"] < 0.5 and got["3"] < 0.5, got
        ActionChains(d).move_to_element(d.find_element(By.TAG_NAME, "h1") if d.find_elements(By.TAG_NAME, "h1")
                                        else d.find_element(By.ID, "map")).perform()
        assert opacity(d) == {"1": 1.0, "2": 1.0, "3": 1.0}
