"""Verification stage: local features (RootSIFT), mutual ratio-test matching, MAGSAC two-view geometry, the
keypoint cache and the pair cache (local.py). Never imports a predictor."""
