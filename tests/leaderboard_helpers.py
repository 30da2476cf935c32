"""Helpers for the leaderboard export tests: a small held-out slice of real photos (plus an EXIF-rotated JPEG and
an RGBA PNG made from held-out photos), and the leaderboard protocol run in a subprocess without img2gps."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import img2gps.export.harness as harness


def write_split(src: Path, out: Path, n_train: int, n_val: int, seed: int = 7) -> tuple[Path, Path]:
    """out/train (images/ links + labels.csv) and out/val (+ val.csv in the course format: image_path column),
    from a seeded run of consecutive photos of `src`, the held-out ones spread evenly through it."""
    labels = pd.read_csv(src / "labels.csv").sort_values("image").reset_index(drop=True)
    n = n_train + n_val  # a run of consecutive photos (bursts: held-out photos have verifiable neighbours)
    start = int(np.random.default_rng(seed).integers(0, len(labels) - n + 1))
    block = np.arange(start, start + n)
    is_val = np.zeros(n, bool)
    is_val[np.linspace(1, n - 2, n_val).round().astype(int)] = True
    parts = {"train": labels.iloc[block[~is_val]], "val": labels.iloc[block[is_val]]}
    for name, df in parts.items():
        (out / name / "images").mkdir(parents=True, exist_ok=True)
        for img in df["image"]:
            link = out / name / "images" / img
            if not link.exists():
                link.symlink_to(src / "images" / img)
    val = parts["val"].copy()
    # two odd inputs img2gps handles: a photo stored sideways with EXIF Orientation=6, and an RGBA PNG
    a, b = val.iloc[0], val.iloc[1]
    with Image.open(src / "images" / a["image"]) as im:
        exif = Image.Exif()
        exif[0x0112] = 6
        im.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(out / "val" / "images" / "rotated.jpg", "JPEG",
                                                                    quality=90, exif=exif)
    with Image.open(src / "images" / b["image"]) as im:
        rgba = im.convert("RGBA")
        rgba.putalpha(200)
        rgba.save(out / "val" / "images" / "alpha.png")
    extra = pd.DataFrame({"image": ["rotated.jpg", "alpha.png"], "Latitude": [a["Latitude"], b["Latitude"]],
                          "Longitude": [a["Longitude"], b["Longitude"]]})
    val = pd.concat([val, extra], ignore_index=True)
    parts["train"].to_csv(out / "train" / "labels.csv", index=False)
    val.to_csv(out / "val" / "labels.csv", index=False)
    pd.DataFrame({"image_path": "images/" + val["image"], "Latitude": val["Latitude"],
                  "Longitude": val["Longitude"]}).to_csv(out / "val" / "val.csv", index=False)
    return out / "train", out / "val"


def run_protocol(export_dir: Path, csv: Path, site: Path, workdir: Path, timeout: float = 600) -> dict:
    """The leaderboard protocol in `python -I -S` with only the backend's packages on sys.path; model.pt is read
    from a copy elsewhere (the evaluator does not keep it beside model.py)."""
    export_dir, csv, site, workdir = (Path(x).resolve() for x in (export_dir, csv, site, workdir))
    harness.build_site(str(site))
    weights = workdir / "uploaded-model.pt"
    weights.write_bytes((export_dir / "model.pt").read_bytes())
    out = workdir / "protocol.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "IMG2GPS"))}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-I", "-S", "-B", harness.__file__, "--site", str(site), "--model", str(export_dir / "model.py"),
           "--preprocess", str(export_dir / "preprocess.py"), "--weights", str(weights), "--csv", str(csv),
           "--json", str(out)]
    r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())
