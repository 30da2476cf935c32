"""types.prediction_dict: the one dict form of a Prediction (CLI json/csv/text, HTTP API, page)."""
from __future__ import annotations

import pytest

from img2gps.geo import haversine_m
from img2gps.types import Neighbour, Prediction, prediction_dict


def _pred(exif=None) -> Prediction:
    n = [Neighbour("b.jpg", 39.9502, -75.19, 40.0), Neighbour("a.jpg", 39.9501, -75.19, 55.0)]
    return Prediction(39.95, -75.19, 12.0, 0.8, True, "rerank", n, photo_exif_position=exif, source="consensus")


def test_neighbours_are_numbered_by_the_score_shown_with_their_distances():
    """Supporting photos were numbered in the method's order while their shown scores read 0.546, 0.609, 0.583:
    every output numbers them best first by the score it shows (ties keep the method's order)."""
    d = prediction_dict(_pred(), photo="q.jpg")
    assert d["photo"] == "q.jpg" and [n["image_id"] for n in d["neighbours"]] == ["a.jpg", "b.jpg"]
    assert d["neighbours"][1]["distance_m"] == pytest.approx(haversine_m(39.95, -75.19, 39.9502, -75.19))
    tied = [Neighbour(x, 39.95, -75.19, s) for x, s in (("p", 0.5), ("q", 0.9), ("r", 0.5), ("s", float("nan")))]
    assert [n.image_id for n in Prediction(39.95, -75.19, 1.0, 0.5, False, "knn", tied).neighbours] == list("qprs")
    assert "thumbnail" not in d["neighbours"][0] and d["exif_distance_m"] is None


def test_thumbnails_and_exif_distance_when_given():
    d = prediction_dict(_pred(exif=(39.951, -75.19)), thumb_url=lambda i: f"/thumbs/{i}")
    assert [n["thumbnail"] for n in d["neighbours"]] == ["/thumbs/a.jpg", "/thumbs/b.jpg"]
    assert d["exif_distance_m"] == pytest.approx(haversine_m(39.95, -75.19, 39.951, -75.19))
    assert d["photo_exif_position"] == [39.951, -75.19] and "photo" not in d
