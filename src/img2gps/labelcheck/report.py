"""The label check's outputs: report.json (every photo), report.md (summary + the flagged photos, for a person to
look at), labels_check.csv (the table), wrong.txt / flagged.txt (names, for `fit --exclude`), map.html (flagged photos, an arrow to each proposed position, thumbnail).
Written into a temp folder and renamed into place (data/outdir.atomic_dir), so OUT is never half-written."""
from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import pandas as pd

from ..errors import PhotoError
from ..outputs import counted
from ..data.outdir import atomic_dir, check_out
from . import CheckResult

MARKER = "label_check.json"


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def to_json(res: CheckResult, dataset: str) -> dict:
    rows = [{k: _clean(v) for k, v in r.items()} for r in res.table.to_dict("records")]
    return {"tool": "img2gps data check", "dataset": dataset, **res.summary, "photos_checked": rows}


def to_markdown(res: CheckResult, dataset: str) -> str:
    s = res.summary
    out = [f"# Label check: {dataset}", "",
           f"{counted(s['photos'], 'photo')}: {s['ok']} ok, {s['doubtful']} doubtful, {s['wrong']} wrong "
           f"({s['unchecked']} could not be checked: no verified view and no capture-time neighbour). "
           f"{counted(s['with_verified_view'], 'photo')} with at least one verified view of the same scene. "
           f"Same-spot tolerance {s['same_spot_tolerance_m']} m (from the data). "
           f"Took {s['seconds']['total']} s.", ""]
    if s["shifted_sessions"]:
        out += ["## Capture sessions offset as a whole", ""]
        out += [f"- {x['session']}: {counted(x['photos'], 'photo')} offset {x['offset_m']} m (east, north "
                f"{x['offset_en_m'][0]}, {x['offset_en_m'][1]} m; +-{x['se_m']} m) from {counted(x['links'], 'verified view')} "
                "of other sessions" for x in s["shifted_sessions"]]
        out.append("")
    for verdict in ("wrong", "doubtful"):
        t = res.table[res.table["verdict"] == verdict]
        if not len(t):
            continue
        out += [f"## {verdict.capitalize()} ({len(t)})", "",
                "| photo | score | label | proposed (+-1 sigma) | why |", "|---|---|---|---|---|"]
        for r in t.itertuples(index=False):
            prop = (f"{r.proposed_lat:.6f}, {r.proposed_lon:.6f} (+-{r.proposed_sigma_m:.0f} m, {r.moved_m:.0f} m away)"
                    if r.proposed_lat is not None and not pd.isna(r.proposed_lat) else "–")
            score = "–" if r.score is None or pd.isna(r.score) else f"{r.score:.2f}"
            out.append(f"| {r.image} | {score} | {r.Latitude:.6f}, {r.Longitude:.6f} | {prop} | {r.reason} |")
        out.append("")
    return "\n".join(out) + "\n"


def _thumb(ds, i: int, side: int = 160) -> str | None:
    try:
        im = ds.open(i, max_side=side)
    except PhotoError:
        return None
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def write_check(res: CheckResult, ds, out: Path, overwrite: bool = False, protected: list[Path] | None = None,
                tiles: bool = True) -> Path:
    """Write the report folder OUT atomically (refusing to replace anything but an earlier check)."""
    out = Path(out)
    check_out(out, protected or [], overwrite, marker=MARKER)
    with atomic_dir(out) as tmp:
        write_into(res, ds, tmp, tiles)
    return out


def write_into(res: CheckResult, ds, tmp: Path, tiles: bool = True) -> None:
    """The report files into an existing (temp) folder."""
    from ..maps import write_label_map

    tmp = Path(tmp)
    res.table.to_csv(tmp / "labels_check.csv", index=False)
    # name lists for `img2gps fit --exclude FILE`: any method can leave these photos out of its gallery
    for verdicts, name in (({"wrong"}, "wrong.txt"), ({"wrong", "doubtful"}, "flagged.txt")):
        names = res.table.loc[res.table["verdict"].isin(verdicts), "image"]
        (tmp / name).write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    (tmp / "report.md").write_text(to_markdown(res, ds.name), encoding="utf-8")
    pos = {n: i for i, n in enumerate(ds.ids)}
    flagged = [dict(r, thumb=_thumb(ds, pos[r["image"]])) for r in res.flagged().to_dict("records")]
    write_label_map(tmp / "map.html", [{k: _clean(v) for k, v in r.items()} for r in flagged], ds.table,
                    title=f"img2gps label check: {ds.name}", tiles=tiles)
    (tmp / MARKER).write_text(json.dumps(to_json(res, ds.name), indent=1, default=str), encoding="utf-8")
