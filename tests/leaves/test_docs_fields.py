"""docs/use.md documents every output field (issue 30: radius_text and exif_distance_text were missing): its
"Output fields" table lists each key of the output schema (types.output_fields) with the schema's own meaning, and
nothing else, so the docs follow the schema."""
from __future__ import annotations

import re
from pathlib import Path

from img2gps.types import output_fields

DOC = Path(__file__).resolve().parents[2] / "docs" / "use.md"


def _expected() -> list[tuple[str, str]]:
    rows = [(k, doc) for k, (_, _, doc) in output_fields("prediction").items()]
    return rows + [(f"neighbours[].{k}", doc) for k, (_, _, doc) in output_fields("neighbour").items()]


def test_use_md_lists_every_output_field_with_its_schema_meaning():
    text = DOC.read_text()
    section = text.split("## Output fields", 1)[1].split("\n## ", 1)[0]
    got = re.findall(r"^\| `([^`]+)` \| (.*) \|$", section, flags=re.M)
    want = _expected()
    table = "\n".join(f"| `{k}` | {d} |" for k, d in want)
    assert got == want, f"docs/use.md's Output fields table differs from types.output_fields; it should read:\n{table}"
