"""Offline HTML maps: self-contained (Leaflet inlined from the installed package), escaped, optional tiles."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from img2gps import DataError
from img2gps.maps import leaflet_dir, map_data, write_map_html
from img2gps.predictors.base import Neighbour, Prediction


def pred(lat=39.9515, lon=-75.1915, exif=None):
    return Prediction(lat, lon, 30.0, 0.6, False, "knn", [Neighbour("g1.jpg", 39.9516, -75.1916, 0.9)], exif)


GALLERY = pd.DataFrame({"image": ["g1.jpg", "g2.jpg"], "Latitude": [39.9516, 39.9520],
                        "Longitude": [-75.1916, -75.1910]})


def test_leaflet_comes_from_the_installed_package():
    d = leaflet_dir()
    assert "Leaflet 1.9" in (d / "leaflet.js").read_text()[:200]


def test_map_has_predictions_truths_errors_and_gallery(tmp_path):
    out = write_map_html(tmp_path / "sub" / "map.html", [pred(), pred(39.9520, -75.1900, exif=(39.9519, -75.1901))],
                         gallery=GALLERY, truths=[(39.9515, -75.1915), (39.9510, -75.1900)],
                         labels=["a.jpg", "b.jpg"], title="demo <run>")
    page = out.read_text()
    assert "<title>demo &lt;run&gt;</title>" in page
    assert "<script src" not in page and "<link " not in page and "@import" not in page
    data = json.loads(re.search(r"var DATA = (.*?);\n", page).group(1))
    assert [it["label"] for it in data["items"]] == ["a.jpg", "b.jpg"]
    assert data["items"][0]["error_m"] == pytest.approx(0.0, abs=1e-6)
    assert data["items"][1]["error_m"] == pytest.approx(111.2, abs=1.0)  # 0.001 deg of latitude
    assert data["items"][1]["prediction"]["photo_exif_position"] == [39.9519, -75.1901]
    assert len(data["gallery"]) == 2
    assert "error mean 56 m, median 56 m" in page  # summary line
    assert "<td>no</td>" in page and "<td>yes</td>" in page  # truth inside / outside the 30 m radius


def test_labels_cannot_break_out_of_the_script(tmp_path):
    page = write_map_html(tmp_path / "m.html", [pred()], labels=["</script><script>alert(1)</script>"]).read_text()
    assert "</script><script>alert(1)" not in page


def test_tiles_can_be_switched_off(tmp_path):
    on = write_map_html(tmp_path / "on.html", [pred()]).read_text()
    off = write_map_html(tmp_path / "off.html", [pred()], tiles=False).read_text()
    assert "tile.openstreetmap.org" in on and '"tilesUrl": null' in off


def test_mismatched_inputs_are_refused():
    with pytest.raises(DataError, match="2 true positions for 1 predictions"):
        map_data([pred()], truths=[(1, 2), (3, 4)])
    with pytest.raises(DataError, match="labels"):
        map_data([pred()], labels=[])
    bad = pred()
    bad.radius_m = float("nan")
    with pytest.raises(DataError, match="radius_m"):
        map_data([bad])


def test_demo_png_titles_keep_whole_long_names():
    """The demo PNG cut the start of long names ('...Image2GPS__IMG_7178.jpg' lost whose photo it was)."""
    import numpy as np

    from img2gps.plots import photo_panels_figure

    names = ["CeciliaChen98__Image2GPS__IMG_7178.jpg",
             "LarrySimingDeng__IMG2GPS-Demo__penn-levine-hall-walnut-street.jpg"]
    lat, lon = np.array([39.9515, 39.9520]), np.array([-75.1915, -75.1910])
    fig = photo_panels_figure(lat, lon, lat + 1e-4, lon, [30.0, 40.0], names, "demo", lat, lon)
    fig.canvas.draw()
    for k, (ax, name) in enumerate(zip(fig.axes, names), 1):
        title = ax.get_title()
        assert title.split("\nerror")[0].replace("\n", "") == f"{k}. {name}", title
        box = ax.title.get_window_extent()  # the wrapped title is no wider than its panel, so never clipped
        assert box.width <= ax.get_window_extent().width * 1.15, (box.width, ax.get_window_extent().width, name)
