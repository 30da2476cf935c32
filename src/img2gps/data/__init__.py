"""Data stage: sources (folder+CSV, parquet), dataset building and cleaning, splits."""
from .sources import GeoDataset, load_dataset

__all__ = ["GeoDataset", "load_dataset"]
