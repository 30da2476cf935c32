"""Feature stage: global image encoders (backbones.py), per-photo caches (cache.py), local features (local.py)."""
