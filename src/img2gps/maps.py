"""Offline HTML maps of predictions: one self-contained file (Leaflet inlined from an installed pip package).

Used by `img2gps predict --map` and `img2gps demo`. Nothing is fetched from a CDN; map tiles are optional
decoration, and without a network the page shows the points on a plain background with a metre grid and says so.
The drawing code is server/static/map.js, shared with the web page, so both show the same thing.
"""
from __future__ import annotations

import html
import importlib.util
import json
import math
import statistics
from pathlib import Path
from typing import Sequence

import pandas as pd

from .errors import DataError, Img2GPSError
from .geo import haversine_m
from .outputs import atomic_write, counted

# Optional tiles (need a network). Plain https: the page works without them.
TILES_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
TILES_ATTRIBUTION = "&copy; OpenStreetMap contributors"
LEAFLET_PACKAGE = "js_lib_leaflet"  # pip install django-js-lib-leaflet (Leaflet 1.9.4, BSD-2-Clause); no Django needed
STATIC_DIR = Path(__file__).parent / "server" / "static"


def leaflet_dir() -> Path:
    """The folder with leaflet.js / leaflet.css inside the installed package (found without importing it)."""
    spec = importlib.util.find_spec(LEAFLET_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        d = Path(list(spec.submodule_search_locations)[0]) / "static" / LEAFLET_PACKAGE
        if (d / "leaflet.js").is_file() and (d / "leaflet.css").is_file():
            return d
    raise Img2GPSError("maps need Leaflet from an installed package: pip install --no-deps django-js-lib-leaflet==1.9.4.1")


def _script(text: str) -> str:
    return text.replace("</script", "<\\/script")  # a label can never close the inline script


def _pred_dict(p) -> dict:
    from .types import Prediction, prediction_dict

    d = prediction_dict(p) if isinstance(p, Prediction) else dict(p)  # the one Prediction-to-dict
    for k in ("latitude", "longitude", "radius_m", "confidence"):
        if not isinstance(d.get(k), (int, float)) or not math.isfinite(d[k]):
            raise DataError(f"map: prediction has no finite {k}")
    return d


def map_data(predictions: Sequence, gallery: pd.DataFrame | None = None,
             truths: Sequence[tuple[float, float] | None] | None = None,
             labels: Sequence[str] | None = None) -> dict:
    """The JSON the map script draws: predictions (+ truth, error), gallery points."""
    n = len(predictions)
    if truths is not None and len(truths) != n:
        raise DataError(f"map: {len(truths)} true positions for {n} predictions")
    if labels is not None and len(labels) != n:
        raise DataError(f"map: {len(labels)} labels for {n} predictions")
    items = []
    for i, p in enumerate(predictions):
        d = _pred_dict(p)
        t = truths[i] if truths is not None else None
        t = [float(t[0]), float(t[1])] if t is not None else None
        err = float(haversine_m(d["latitude"], d["longitude"], t[0], t[1])) if t else None
        items.append({"label": str(labels[i]) if labels is not None else f"photo {i + 1}", "prediction": d,
                      "truth": t, "error_m": err})
    g = []
    if gallery is not None and len(gallery):
        from .data.sources import normalise_columns

        gal = normalise_columns(gallery, "gallery")
        g = [{"id": str(r.image), "lat": float(r.Latitude), "lon": float(r.Longitude)}
             for r in gal[["image", "Latitude", "Longitude"]].itertuples(index=False)]
    return {"items": items, "gallery": g}


def _table(items: list[dict]) -> str:
    rows = []
    for i, it in enumerate(items):
        p = it["prediction"]
        err = f"{it['error_m']:.0f}" if it["error_m"] is not None else ""
        inside = "" if it["error_m"] is None else ("yes" if it["error_m"] <= p["radius_m"] else "no")
        # data-item: hovering the row highlights that photo's answer, circle and truth on the map (numbered alike)
        rows.append(f"<tr data-item='{i}'>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            i + 1, it["label"], p.get("answer", "") + (f" ({p['exif_note']})" if p.get("exif_note") else ""),
            f"{p['latitude']:.6f}", f"{p['longitude']:.6f}", f"{p['radius_m']:.0f}", p.get("radius_note", ""),
            p.get("chance_note") or f"{p['confidence']:.2f}", err, inside)) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("#", "photo", "answer", "latitude", "longitude", "radius m",
                                             "radius holds", "chance", "error m", "inside radius"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _page(title: str, summary: str, legend: str, table: str, data: dict, tiles: bool, draw: str) -> str:
    """One self-contained page: Leaflet and server/static/map.js inlined, DATA drawn by the `draw` statement."""
    ldir = leaflet_dir()
    cfg = {"tilesUrl": TILES_URL if tiles else None, "tilesAttribution": TILES_ATTRIBUTION}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="img2gps">
<style>{(ldir / "leaflet.css").read_text()}</style>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 0; color: #222; }}
header {{ padding: 8px 12px; }} h1 {{ font-size: 18px; margin: 0 0 4px; }}
#map {{ height: 68vh; border-top: 1px solid #ccc; border-bottom: 1px solid #ccc; }}
.img2gps-plain {{ background: #f4f4ee; }}
#notice {{ font-size: 12px; color: #555; padding: 4px 12px; }}
#notice[data-tiles=unavailable] {{ color: #8a4b00; }}
.k {{ display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin: 0 3px 0 10px; }}
table {{ border-collapse: collapse; margin: 8px 12px; }} td, th {{ border: 1px solid #ddd; padding: 2px 8px; text-align: right; }}
td:nth-child(2), th:nth-child(2) {{ text-align: left; }}
tr[data-item]:hover {{ background: #fde8e8; cursor: default; }}
.img2gps-num {{ padding: 0 3px; font-size: 11px; font-weight: bold; }}
</style></head><body>
<header><h1>{html.escape(title)}</h1><div>{html.escape(summary)}</div><div>{legend}</div></header>
<div id="map"></div><div id="notice"></div>
{table}
<script>{_script((ldir / "leaflet.js").read_text())}</script>
<script>{_script((STATIC_DIR / "map.js").read_text())}</script>
<script>
var DATA = {_script(json.dumps(data))};
var CFG = {_script(json.dumps(cfg))};
var view = Img2GPSMap.create(document.getElementById("map"),
  {{tilesUrl: CFG.tilesUrl, tilesAttribution: CFG.tilesAttribution, noticeEl: document.getElementById("notice")}});
view.setGallery(DATA.gallery);
{draw}
</script></body></html>
"""


def write_label_map(path: str | Path, flagged: Sequence[dict], gallery: pd.DataFrame | None = None,
                    title: str = "img2gps label check", tiles: bool = True) -> Path:
    """Write one self-contained HTML map of a label check (labelcheck/): each flagged photo at its label, coloured
    by verdict, an arrow to its proposed position with a 1-sigma circle, its thumbnail (a data: URI under the
    key `thumb`) and reason in the popup. `flagged`: rows of the check's table (image, verdict, reason, score,
    Latitude, Longitude, proposed_lat, proposed_lon, proposed_sigma_m[, thumb])."""
    path = Path(path)
    data = map_data([], gallery)
    data["items"] = [{k: r.get(k) for k in ("image", "verdict", "reason", "score", "Latitude", "Longitude",
                                            "proposed_lat", "proposed_lon", "proposed_sigma_m", "thumb")}
                     for r in flagged]
    n_wrong = sum(r.get("verdict") == "wrong" for r in flagged)
    summary = (f"{n_wrong} wrong, {len(flagged) - n_wrong} doubtful among {counted(len(data['gallery']), 'photo')}; "
               "click a point for its reason and thumbnail")
    legend = ("<span class=k style='background:#d62728'></span>wrong (arrow: proposed position, circle: its 1-sigma) "
              "<span class=k style='background:#ff7f0e'></span>doubtful "
              "<span class=k style='background:#7f7f7f'></span>gallery photo")
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
        r.get("image"), r.get("verdict"), "" if r.get("score") is None else f"{r['score']:.2f}", r.get("reason")))
        + "</tr>" for r in flagged)
    table = ("<table><thead><tr><th>photo</th><th>verdict</th><th>score</th><th>why</th></tr></thead>"
             f"<tbody>{rows}</tbody></table>")
    page = _page(title, summary, legend, table, data, tiles, "view.showLabelChecks(DATA.items);")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def write_map_html(path: str | Path, predictions: Sequence, gallery: pd.DataFrame | None = None,
                   truths: Sequence[tuple[float, float] | None] | None = None, labels: Sequence[str] | None = None,
                   title: str = "img2gps", tiles: bool = True) -> Path:
    """Write one self-contained HTML map: each prediction with its error circle, optional true positions with
    error lines, the photo's own EXIF position when it has one, and the gallery points."""
    path = Path(path)
    data = map_data(predictions, gallery, truths, labels)
    errs = [it["error_m"] for it in data["items"] if it["error_m"] is not None]
    summary = f"{counted(len(data['items']), 'prediction')}, {counted(len(data['gallery']), 'gallery photo')}"
    if errs:
        summary += f"; error mean {statistics.fmean(errs):.0f} m, median {statistics.median(errs):.0f} m"
    legend = ("<span class=k style='background:#d62728'></span>prediction + error circle "
              "<span class=k style='background:#2ca02c'></span>true position "
              "<span class=k style='background:#9467bd'></span>photo EXIF position "
              "<span class=k style='background:#7f7f7f'></span>gallery photo"
              + (" &middot; numbers pair each answer with its truth; hover a row or an answer to show that photo "
                 "alone" if len(data["items"]) > 1 else ""))
    draw = """view.showPredictions(DATA.items, DATA.items.length === 1);
document.querySelectorAll("tr[data-item]").forEach(function (tr) {
  tr.addEventListener("mouseenter", function () { view.focus(+tr.getAttribute("data-item")); });
  tr.addEventListener("mouseleave", function () { view.focus(null); });
});"""
    page = _page(title, summary, legend, _table(data["items"]), data, tiles, draw)
    return atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
