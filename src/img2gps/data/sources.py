"""One dataset type over every source: a folder with labels.csv, or a Hugging Face style parquet file."""
from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import DataError, PhotoError
from ..outputs import counted
from ..photos import open_image, read_bytes

# Accepted spellings of the label columns (case-insensitive) -> canonical name.
COLUMN_ALIASES = {
    "image": ("image", "image_file", "file_name", "filename", "file", "path", "image_path", "name"),
    "Latitude": ("latitude", "lat"),
    "Longitude": ("longitude", "lon", "lng", "long"),
    "time": ("time", "datetime", "timestamp", "date_time"),
    "device": ("device", "camera", "model"),
    "heading": ("heading", "gpsimgdirection", "img_direction", "bearing"),
    "focal35": ("focal35", "focal_35mm", "focallengthin35mmfilm"),
}
CAMERA_COLUMNS = ("heading", "focal35")  # optional: compass heading (deg, true north) and 35 mm-equiv. focal (mm)


def normalise_columns(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Rename accepted spellings to image/Latitude/Longitude[/time/device]; clear error if any is missing.
    Google Takeout's integer latitudeE7/longitudeE7 columns (degrees x 1e7) become Latitude/Longitude."""
    lower = {str(c).strip().lower(): c for c in df.columns}
    if "latitudee7" in lower and "longitudee7" in lower and not {"latitude", "lat"} & set(lower):
        df = df.assign(Latitude=[parse_number(v) / 1e7 for v in df[lower["latitudee7"]]],
                       Longitude=[parse_number(v) / 1e7 for v in df[lower["longitudee7"]]])
        lower = {str(c).strip().lower(): c for c in df.columns}
    ren = {}
    for canon, names in COLUMN_ALIASES.items():
        for n in names:
            if n in lower and lower[n] not in ren:
                ren[lower[n]] = canon
                break
    df = df.rename(columns=ren)
    missing = [c for c in ("image", "Latitude", "Longitude") if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, lower.values())) or 'none'}; "
            "expected image,Latitude,Longitude)"
        )
    return df


def parse_number(v) -> float:
    """A coordinate cell -> float (NaN when it is not a number). Accepts a decimal comma ('39,9515', as spreadsheet
    programs in many locales write it) and surrounding spaces."""
    if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
        return float(v)
    s = str(v).strip() if v is not None else ""
    if s.count(",") == 1 and "." not in s:
        s = s.replace(",", ".")
    try:
        return float(s)
    except ValueError:
        return _dms_text(s)


_DMS = re.compile(r"""^([NSEW])?\s*([+-])?\s*(\d+(?:\.\d+)?)\s*(?:°|º|d|deg)?\s*(?:(\d+(?:\.\d+)?)\s*(?:'|′|m|min))?\s*
                      (?:(\d+(?:\.\d+)?)\s*(?:"|″|''|s|sec))?\s*([NSEW])?$""", re.I | re.X)


def _dms_text(s: str) -> float:
    """Degrees written as text, as map apps and EXIF tools print them (39°57'05.4"N, 75°11'29.4"W, 39.9515° N,
    W 75° 11.49'); NaN for anything else. A hemisphere letter S or W, or a minus sign, makes it negative."""
    m = _DMS.match(s.strip().replace("\u00a0", " "))
    if not m:
        return math.nan
    hemi = (m.group(1) or m.group(6) or "").upper()
    marked = any(c in s for c in "°º'′\"″") or re.search(r"\d\s*(d|deg|m|min|s|sec)\b", s, re.I)
    if not (hemi or marked):
        return math.nan
    deg = float(m.group(3)) + float(m.group(4) or 0) / 60 + float(m.group(5) or 0) / 3600
    return -deg if (m.group(2) == "-" or hemi in ("S", "W")) else deg


def validate_coordinates(df: pd.DataFrame, source: str) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Drop rows with missing/NaN/inf/out-of-range/(0,0) coordinates or duplicate names; return (clean, skipped)."""
    skipped: list[tuple[str, str]] = []
    keep = []
    seen: set[str] = set()
    for i, row in df.iterrows():
        name = str(row["image"]) if not pd.isna(row["image"]) else ""
        lat, lon = parse_number(row["Latitude"]), parse_number(row["Longitude"])
        where = f"{source} row {i + 2}" + (f" ({name})" if name else "")
        if not name:
            skipped.append((where, "empty image name"))
        elif not (math.isfinite(lat) and math.isfinite(lon)):
            skipped.append((where, "latitude/longitude missing or not a finite number"))
        elif abs(lat) > 90 or abs(lon) > 180:
            skipped.append((where, f"coordinates out of range ({lat}, {lon})"))
        elif lat == 0 and lon == 0:
            skipped.append((where, "coordinates are (0, 0), a placeholder"))
        elif name in seen:
            skipped.append((where, "duplicate image name; first row kept"))
        else:
            seen.add(name)
            keep.append(i)
            continue
    out = df.loc[keep].copy()
    out["Latitude"] = [parse_number(v) for v in out["Latitude"]]
    out["Longitude"] = [parse_number(v) for v in out["Longitude"]]
    out = out.astype({"Latitude": float, "Longitude": float})
    out["image"] = out["image"].astype(str)
    return out.reset_index(drop=True), skipped


def csv_encoding(path: Path) -> str:
    """'utf-16' for a file that starts with a UTF-16 byte-order mark (Excel's "Unicode Text" export), else
    'utf-8-sig' (UTF-8 with or without its mark)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return "utf-8-sig"
    return "utf-16" if head in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"


def sniff_separator(path: Path, encoding: str = "utf-8-sig") -> str:
    """',' unless the header line is clearly separated by ';' or tabs (spreadsheet exports in many locales)."""
    try:
        with open(path, encoding=encoding, errors="replace") as f:
            head = f.readline()
    except OSError:
        return ","
    counts = {sep: head.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] > counts[","] else ","


def read_labels_csv(path: Path) -> pd.DataFrame:
    """A labels CSV (UTF-8, with or without a byte-order mark; ',' ';' or tab separated; decimal commas allowed)
    with its columns normalised to image, Latitude, Longitude[, time, device]. DataError when unreadable."""
    if not path.exists():
        raise DataError(f"{path}: labels file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a CSV file")
    enc = csv_encoding(path)
    try:
        df = pd.read_csv(path, sep=sniff_separator(path, enc), dtype=str, encoding=enc,
                         skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty CSV") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    return normalise_columns(df, str(path))


@dataclass
class GeoDataset:
    """Rows of (image id, latitude, longitude[, time, device]) plus a way to read each image's bytes.

    `table` always has columns image, Latitude, Longitude (and time/device when known). Slicing returns a
    GeoDataset that shares the reader, so folds cost nothing.
    """

    table: pd.DataFrame
    reader: Callable[[str], bytes]
    name: str = "dataset"
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> list[str]:
        return self.table["image"].tolist()

    @property
    def lat(self) -> np.ndarray:
        return self.table["Latitude"].to_numpy(float)

    @property
    def lon(self) -> np.ndarray:
        return self.table["Longitude"].to_numpy(float)

    def subset(self, idx: Sequence[int] | np.ndarray) -> "GeoDataset":
        return GeoDataset(self.table.iloc[list(idx)].reset_index(drop=True), self.reader, self.name)

    def select_ids(self, ids: Sequence[str]) -> "GeoDataset":
        pos = {n: i for i, n in enumerate(self.ids)}
        missing = [n for n in ids if n not in pos]
        if missing:
            raise DataError(f"{self.name}: {counted(len(missing), 'image')} not in the dataset, e.g. {missing[0]}")
        return self.subset([pos[n] for n in ids])

    def exclude_ids(self, ids: Sequence[str]) -> "GeoDataset":
        drop = set(ids)
        return self.subset([i for i, n in enumerate(self.ids) if n not in drop])

    def read(self, i: int) -> bytes:
        return self.reader(self.ids[i])

    def open(self, i: int, max_side: int | None = None) -> Image.Image:
        return open_image(self.read(i), max_side=max_side)

    def content_key(self, i: int) -> str:
        """Hash of the image bytes: the key of every per-photo cache (embeddings, keypoints)."""
        return hashlib.sha1(self.read(i)).hexdigest()

    def with_camera_meta(self) -> "GeoDataset":
        """The same dataset with numeric `heading` (EXIF GPSImgDirection, degrees from true north) and `focal35`
        (35 mm-equivalent focal length, mm) columns, NaN where unknown: taken from labels.csv when it has them,
        else read from each photo's EXIF header. For gallery photos and bench truth only: a query's own EXIF
        direction is never an input to a method. A photo that cannot be read gets NaN."""
        from ..photos import read_meta

        t = self.table.copy()
        have = [c for c in CAMERA_COLUMNS if c in t.columns]
        for c in have:
            t[c] = pd.to_numeric(t[c], errors="coerce")
        missing = [c for c in CAMERA_COLUMNS if c not in have]
        if missing:
            vals = {c: [] for c in missing}
            for name in t["image"]:
                try:
                    m = read_meta(self.reader(name))
                except (PhotoError, OSError):
                    m = None
                for c in missing:
                    v = getattr(m, c, None) if m is not None else None
                    vals[c].append(np.nan if v is None else float(v))
            for c in missing:
                t[c] = np.array(vals[c], float)
        if "heading" in t.columns:
            h = t["heading"].to_numpy(float)
            t["heading"] = np.where((h >= 0) & (h <= 360), h % 360.0, np.nan)
        return GeoDataset(t, self.reader, self.name, self.skipped)

    def fingerprint(self) -> str:
        """Hash of the gallery table (names + coordinates): identifies what a model was fitted on."""
        t = self.table[["image", "Latitude", "Longitude"]].to_csv(index=False, float_format="%.8f")
        return hashlib.sha1(t.encode()).hexdigest()[:16]


def _folder_reader(image_dir: Path) -> Callable[[str], bytes]:
    def read(name: str) -> bytes:
        # A labels row must not point outside the dataset (../../etc/passwd, /etc/passwd); symlinks placed
        # inside the dataset by its owner are fine, so the check is on the name, not the resolved path.
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise PhotoError(name, "path leaves the dataset folder")
        return read_bytes(image_dir / rel)

    return read


def _norm_name(x: str) -> str:
    return unicodedata.normalize("NFC", x.replace("\\", "/")).casefold()


def _disk_names(image_dir: Path) -> dict[str, list[str]]:
    """Relative paths of the (non-hidden) files under image_dir, keyed by their case- and Unicode-folded form."""
    files: dict[str, list[str]] = {}
    for f in image_dir.rglob("*"):
        rel = f.relative_to(image_dir)
        if f.is_file() and not any(part.startswith(".") for part in rel.parts):
            files.setdefault(_norm_name(rel.as_posix()), []).append(rel.as_posix())
    return files


def _has_photos(folder: Path, look: int = 2000) -> bool:
    """True when a photo file lies under `folder` (the first `look` entries are enough to tell)."""
    from itertools import islice

    from ..photos import PHOTO_SUFFIXES

    return any(p.suffix.lower() in PHOTO_SUFFIXES for p in islice(folder.rglob("*"), look))


def from_folder(folder: str | Path, labels: str | Path | None = None, check_files: bool = True) -> GeoDataset:
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder}: dataset folder not found")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    csv = Path(labels) if labels else folder / "labels.csv"
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    if labels is None and not csv.exists() and _has_photos(folder):
        raise DataError(f"{folder}: a folder of photos, not a dataset (no labels.csv); make one first with "
                        f"`img2gps data build {folder} DATASET/` (positions from EXIF GPS, or --labels CSV), "
                        "then pass --data DATASET/")
    df, skipped = validate_coordinates(read_labels_csv(csv), str(csv))
    if check_files:
        if image_dir != folder:  # names written relative to the dataset root ('images/x.jpg') name the same files
            df["image"] = [n[len("images/"):] if n.replace("\\", "/").startswith("images/")
                           and not (image_dir / n).is_file() and (folder / n).is_file() else n for n in df["image"]]
        exists = df["image"].map(lambda n: (image_dir / n).is_file())
        if not exists.all():  # a CSV made on Windows or macOS: IMG_1.JPG for img_1.jpg, composed vs decomposed é
            on_disk = _disk_names(image_dir)
            match = [on_disk.get(_norm_name(n), []) for n in df.loc[~exists, "image"]]
            df.loc[~exists, "image"] = [m[0] if len(m) == 1 else n for m, n in zip(match, df.loc[~exists, "image"])]
            exists = df["image"].map(lambda n: (image_dir / n).is_file())
        skipped += [(f"{csv} ({n})", "image file not found") for n in df.loc[~exists, "image"]]
        df = df[exists].reset_index(drop=True)
    if len(df) == 0:
        raise DataError(f"{folder}: no usable labelled photos" + (f" ({counted(len(skipped), 'row')} skipped)" if skipped else ""))
    return GeoDataset(df, _folder_reader(image_dir), name=str(folder), skipped=skipped)


def from_parquet(path: str) -> GeoDataset:
    """Hugging Face Image-feature parquet: columns image{bytes,path}, Latitude, Longitude.

    `path` may be a local file/folder of .parquet files or `hf://datasets/OWNER/NAME` (needs network + huggingface_hub).
    """
    files: list[str]
    if path.startswith("hf://"):
        try:
            from huggingface_hub import HfFileSystem
        except ImportError:
            raise DataError("reading hf:// datasets needs `pip install huggingface_hub` and a network") from None
        fs = HfFileSystem()
        files = [f"hf://{f}" for f in fs.glob(path.rstrip("/") + "/**/*.parquet")]
        if not files:
            raise DataError(f"{path}: no parquet files found")
    else:
        p = Path(path)
        if not p.exists():
            raise DataError(f"{path}: not found")
        files = [str(f) for f in sorted(p.rglob("*.parquet"))] if p.is_dir() else [str(p)]
        if not files:
            raise DataError(f"{path}: no .parquet files")
    try:
        df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    except Exception as e:  # pyarrow raises several unrelated types
        raise DataError(f"{path}: not a readable parquet file ({str(e).splitlines()[0]})") from None
    df = df.rename(columns={c: c for c in df.columns})
    if "image" not in df.columns:
        raise DataError(f"{path}: no 'image' column")
    blobs: dict[str, bytes] = {}
    names = []
    for i, img in enumerate(df["image"]):
        data = img.get("bytes") if isinstance(img, dict) else img if isinstance(img, (bytes, bytearray)) else None
        stem = (img.get("path") if isinstance(img, dict) else None) or f"row{i:06d}.jpg"
        name = f"{i:06d}_{Path(str(stem)).name}"
        names.append(name)
        if data:
            blobs[name] = bytes(data)
    table = normalise_columns(df.drop(columns=["image"]).assign(image=names), path)
    table, skipped = validate_coordinates(table, path)
    missing = ~table["image"].isin(list(blobs))
    skipped += [(f"{path} ({n})", "row has no image bytes") for n in table.loc[missing, "image"]]
    table = table[~missing].reset_index(drop=True)

    def read(name: str) -> bytes:
        try:
            return blobs[name]
        except KeyError:
            raise PhotoError(name, "not in this parquet dataset") from None

    if len(table) == 0:
        raise DataError(f"{path}: no usable labelled photos")
    return GeoDataset(table, read, name=path, skipped=skipped)


def load_dataset(source: str | Path, labels: str | Path | None = None) -> GeoDataset:
    """Folder (images/ + labels.csv), a .parquet file/folder of them, or hf://datasets/..."""
    s = str(source)
    if s.startswith("hf://") or s.endswith(".parquet"):
        return from_parquet(s)
    p = Path(s)
    if p.is_dir() and not (p / "labels.csv").exists() and labels is None and any(p.rglob("*.parquet")):
        return from_parquet(s)
    return from_folder(p, labels)
