import numpy as np

from img2gps.localization.calibration import RadiusModel
from img2gps.geo import LocalFrame, haversine_m, weighted_centre, weighted_median_en


def test_haversine_known_distance_and_zero():
    # one degree of latitude is ~111.2 km on the mean-radius sphere
    assert abs(haversine_m(0, 0, 1, 0) - 111_195) < 5
    assert haversine_m(39.95, -75.19, 39.95, -75.19) == 0.0
    assert np.isfinite(haversine_m(0, 0, 0, 180))  # antipodal-ish: clipping keeps arcsin finite


def test_local_frame_round_trip_and_metric():
    f = LocalFrame(39.95, -75.19)
    en = f.to_en([39.951, 39.95], [-75.19, -75.191])
    assert abs(en[0, 1] - haversine_m(39.95, -75.19, 39.951, -75.19)) < 0.05
    assert abs(abs(en[1, 0]) - haversine_m(39.95, -75.19, 39.95, -75.191)) < 0.05
    lat, lon = f.to_latlon(en)
    assert np.allclose(lat, [39.951, 39.95]) and np.allclose(lon, [-75.19, -75.191])


def test_weighted_centre_and_robust_median():
    lat, lon = weighted_centre([10.0, 10.002], [20.0, 20.0], [1, 3])
    assert abs(lat - 10.0015) < 1e-6 and abs(lon - 20) < 1e-9
    en = np.array([[0, 0], [1, 0], [0, 1], [500, 500]], float)
    med = weighted_median_en(en, np.ones(4))
    assert np.linalg.norm(med) < 2  # the outlier 700 m away barely moves it


def test_radius_model_confidence_spans_zero_to_one():
    m = RadiusModel(scale=2.0, area_m=100.0)
    assert m.confidence(0.0) == 1.0 and m.confidence(1e9) == 0.0 and m.confidence(50.0) == 0.5
    assert m.radius(5.0) == 30.0  # scale * (spread + offset 10 m)


