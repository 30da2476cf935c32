"""Write an analysis's table as markdown + JSON in the bench format (title, command, date, table rows)."""
from __future__ import annotations

import json
import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path


def command_line() -> str | None:
    """The command as typed (`img2gps analyze ...`), when run from the console script."""
    if sys.argv and Path(sys.argv[0]).name == "img2gps":
        import shlex

        return "img2gps " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return None


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):  # values already rounded by the caller keep their digits; others get 3 significant
        return r if len(r := repr(v)) <= 10 else (f"{v:.3g}" if abs(v) < 1 else f"{v:.1f}")
    return str(v)


def markdown_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return out


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # pragma: no cover - not on every platform
        return None


def write_report(out_dir: Path, stem: str, title: str, rows: list[dict], notes: list[str] | None = None,
                 extra: dict | None = None, images: list[Path] | None = None,
                 tables: dict[str, list[dict]] | None = None) -> list[Path]:
    """out_dir/stem.md and out_dir/stem.json; `extra` adds keys to the JSON (never overriding the bench keys);
    `tables` adds titled tables to the markdown after the notes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    cmd = command_line()
    from ..provenance import code_revision

    doc = {**(extra or {}), "title": title, "command": cmd, "date": date, "code": code_revision(), "table": rows}
    load = _load_average()
    doc.setdefault("machine", {"cpus": os.cpu_count(), "load_avg_1min_at_end": load})
    md = [f"# {title}", "", f"Run {date}" + (f": `{cmd}`" if cmd else "") + "."
          + (f" Machine: {os.cpu_count()} CPUs, 1-minute load average {load:.1f} at the end (timings scale with "
             "it)." if load is not None else ""), ""]
    md += [f"![{p.stem}]({p.name})" for p in images or []] + ([""] if images else [])
    md += markdown_table(rows) + [""]
    md += [f"- {n}" for n in notes or []]
    for name, t in (tables or {}).items():
        md += ["", f"## {name}", ""] + markdown_table(t)
    jp = out_dir / f"{stem}.json"
    tmp = jp.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=_json_default))
    os.replace(tmp, jp)
    mp = out_dir / f"{stem}.md"
    mp.write_text("\n".join(md).rstrip() + "\n")
    return [jp, mp]
