import pandas as pd
import pytest

from img2gps.data import load_dataset
from img2gps.data.splits import kfold_geo_folds, location_disjoint_split, loo_folds
from img2gps.errors import DataError
from img2gps.geo import LocalFrame, pairwise_m
from synth import scene


def test_folder_dataset_and_column_spellings(tmp_path):
    (tmp_path / "images").mkdir()
    for n in ("a.jpg", "b.jpg"):
        scene(1, 32).save(tmp_path / "images" / n)
    pd.DataFrame({"file_name": ["a.jpg", "b.jpg", "missing.jpg", "a.jpg"], "lat": [1.0, 1.001, 1.0, 1.0],
                  "lng": [2.0, 2.0, 2.0, 2.0]}).to_csv(tmp_path / "labels.csv", index=False)
    ds = load_dataset(tmp_path)
    assert ds.ids == ["a.jpg", "b.jpg"]
    reasons = " ".join(r for _, r in ds.skipped)
    assert "not found" in reasons and "duplicate" in reasons
    assert ds.open(0).size == (32, 32)


@pytest.mark.parametrize("csv,msg", [
    ("name_x,Latitude,Longitude\na.jpg,1,2\n", "missing column"),
    ("image,Latitude,Longitude\na.jpg,nan,2\nb.jpg,inf,3\nc.jpg,91,3\n", "no usable"),
])
def test_bad_csvs(tmp_path, csv, msg):
    (tmp_path / "labels.csv").write_text(csv)
    with pytest.raises(DataError, match=msg):
        load_dataset(tmp_path)


def test_parquet_in_hugging_face_image_format(tmp_path):
    import io

    blobs = []
    for s in range(3):
        b = io.BytesIO()
        scene(s, 24).save(b, "JPEG")
        blobs.append({"bytes": b.getvalue(), "path": f"img{s}.jpg"})
    pd.DataFrame({"image": blobs, "Latitude": [39.95, 39.951, 39.952], "Longitude": [-75.19] * 3}).to_parquet(
        tmp_path / "train-00000.parquet")
    ds = load_dataset(tmp_path / "train-00000.parquet")
    assert len(ds) == 3 and ds.open(2).size == (24, 24)
    assert len(load_dataset(tmp_path)) == 3  # a folder of parquet files works too
    assert ds.fingerprint() == ds.subset([0, 1, 2]).fingerprint()


def test_geo_folds_keep_buffer_and_cover_everything(gallery_dir):
    ds = load_dataset(gallery_dir)
    en = LocalFrame.around(ds.lat, ds.lon).to_en(ds.lat, ds.lon)
    folds = kfold_geo_folds(ds.lat, ds.lon, 3, radius_m=10)
    assert sorted(i for f in folds for i in f.val) == list(range(len(ds)))
    for f in folds:
        assert pairwise_m(en[f.train], en[f.val]).min() > 10
    f = location_disjoint_split(ds.lat, ds.lon, 0.2, radius_m=10)
    assert pairwise_m(en[f.train], en[f.val]).min() > 10
    assert len(loo_folds(5)) == 5
