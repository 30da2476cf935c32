"""Per-photo feature caches on disk (cache.py) and the trainable trunk + augmentation used by the trained methods
(trainable.py). Global encoders live in retrieval/, local features in verification/."""
