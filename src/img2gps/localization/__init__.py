"""Localization stage: from verified matches to a position, heading and radius (consensus, pose, sfm)."""
