"""`data check --apply`: a new dataset with corrected labels; the input is never modified.

The new labels.csv keeps every column of the old one and adds `label_check` (ok | corrected | doubtful |
wrong: the verdict, `corrected` when the position was replaced), `label_score`, `label_reason`, and
`original_latitude` / `original_longitude` for the rows that changed. Only `wrong` photos with a proposed
position are moved; a `doubtful` one keeps its label (a person decides). images/ is copied; the folder is
written in a temp dir and renamed into place.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..data.outdir import atomic_dir, check_out
from . import WRONG, CheckResult

MARKER = "report.json"  # what `data build` writes last: an applied dataset is a dataset


def corrected_table(table: pd.DataFrame, res: CheckResult) -> pd.DataFrame:
    """The labels table with corrected positions and the label_check columns (rows matched by image name)."""
    chk = res.table.set_index("image")
    t = table.copy()
    t["original_latitude"] = pd.Series([None] * len(t), dtype=object)
    t["original_longitude"] = pd.Series([None] * len(t), dtype=object)
    status, score, reason = [], [], []
    for k, name in enumerate(t["image"]):
        r = chk.loc[name]
        st = r["verdict"]
        if st == WRONG and r["proposed_lat"] is not None and not pd.isna(r["proposed_lat"]):
            t.at[k, "original_latitude"], t.at[k, "original_longitude"] = t.at[k, "Latitude"], t.at[k, "Longitude"]
            t.at[k, "Latitude"], t.at[k, "Longitude"] = float(r["proposed_lat"]), float(r["proposed_lon"])
            st = "corrected"
        status.append(st)
        score.append(r["score"])
        reason.append(r["reason"] if r["verdict"] != "ok" else "")
    t["label_check"], t["label_score"], t["label_reason"] = status, score, reason
    return t


def apply_check(res: CheckResult, dataset: Path, out: Path, overwrite: bool = False, extra=None) -> pd.DataFrame:
    """Write OUT = DATASET with corrected labels; returns the new table. DataError when OUT is unsafe.
    extra(tmp_folder), when given, writes more files into the new dataset before it is renamed into place."""
    dataset, out = Path(dataset), Path(out)
    src_images = dataset / "images" if (dataset / "images").is_dir() else None
    if src_images is None:
        raise DataError(f"{dataset}: --apply needs a dataset folder with images/ and labels.csv")
    check_out(out, [dataset], overwrite, marker=MARKER)
    from ..data.sources import read_labels_csv, validate_coordinates

    table, _ = validate_coordinates(read_labels_csv(dataset / "labels.csv"), str(dataset / "labels.csv"))
    table = table[table["image"].isin(set(res.table["image"]))].reset_index(drop=True)
    new = corrected_table(table, res)
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        for name in new["image"]:
            s, d = src_images / name, tmp / "images" / name
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(s, d)  # a copy, not a link: editing the new dataset must never touch the input
        new.to_csv(tmp / "labels.csv", index=False)
        counts = new["label_check"].value_counts().to_dict()
        (tmp / MARKER).write_text(json.dumps({"tool": "img2gps data check --apply", "source": str(dataset),
                                              "counts": {k: int(v) for k, v in counts.items()},
                                              "check": res.summary}, indent=1, default=str))
        if extra is not None:
            extra(tmp)
    return new
