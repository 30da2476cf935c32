"""Localization stage: spatial consensus over verified candidates (consensus.py), position averaging of
neighbours (aggregate.py), split-conformal radius calibration (calibration.py) with same-spot-aware hold-outs
(holdout.py), and the query camera's pose and heading from two-view geometry (pose.py, camera.py). Never imports a
predictor."""
