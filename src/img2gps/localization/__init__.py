"""Localization stage: spatial consensus over verified candidates (consensus.py) and split-conformal radius
calibration (calibration.py). Never imports a predictor."""
