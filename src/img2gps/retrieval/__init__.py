"""Retrieval stage: global image encoders (encoders.py), the global-descriptor database with its faiss index
(database.py), and VLAD over local descriptors (vlad.py). Never imports a predictor."""
