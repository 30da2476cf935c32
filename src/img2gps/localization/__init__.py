"""Localization stage: spatial consensus over verified candidates (consensus.py), split-conformal radius
calibration (calibration.py) with same-spot-aware hold-outs (holdout.py), the query camera's pose and heading
from two-view geometry (pose.py, camera.py) and georegistration (georegister.py). Never imports a predictor."""
