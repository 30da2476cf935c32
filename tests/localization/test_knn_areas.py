"""The k-NN neighbours of one area (localization/knn.py in_area)."""
import numpy as np

from img2gps.localization.knn import in_area


def test_neighbours_come_from_the_named_area_only():
    sims = np.array([0.9, 0.8, 0.7, 0.6])
    label = np.array([0, 1, 0, 1])
    s, idx = in_area(sims, label, 3, area=1)
    assert idx.tolist() == [1, 3] and s.tolist() == [0.8, 0.6]


def test_a_one_photo_area_whose_photo_is_held_out_answers_from_the_nearest_remaining_area():
    # a gallery with one far photo (a second area of one photo): holding that photo out for calibration leaves its
    # area empty; the neighbours then come from the area of the most similar remaining photo, never none
    sims = np.array([0.5, 0.7, 0.6, -np.inf])
    label = np.array([0, 0, 0, 1])
    s, idx = in_area(sims, label, 2, area=1)
    assert idx.tolist() == [1, 2]
    s, idx = in_area(sims, label, 2)
    assert idx.tolist() == [1, 2]
