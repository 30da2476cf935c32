"""Counts in words: one rule (outputs.counted) for every message, so none says "1 photos" or "photo(s)"."""
from __future__ import annotations

import re
from pathlib import Path

import img2gps
from img2gps.area import describe, split_areas
from img2gps.outputs import counted

# a placeholder, then up to three words, the last ending in "(s)": "{n} photo(s)", "{n} finished fold(s)"
_COUNT_S = re.compile(r"\}\)?\s+(?:[\w/-]+\s+){0,2}[\w/-]+\(s\)")


def test_counted():
    assert [counted(n, "photo") for n in (0, 1, 2, 1000)] == ["0 photos", "1 photo", "2 photos", "1000 photos"]
    assert counted(1, "held-out query", "held-out queries") == "1 held-out query"
    assert counted(3, "held-out query", "held-out queries") == "3 held-out queries"


def test_an_area_of_one_photo_says_photo():
    lines = describe(split_areas([39.95, 39.9501, 39.9502, 40.05], [-75.19, -75.19, -75.19, -75.19]))
    assert lines[0].startswith("area 1: 3 photos,") and lines[1].startswith("area 2: 1 photo,"), lines


def test_no_message_writes_a_count_with_s_in_brackets():
    src = Path(img2gps.__file__).parent
    hits = [f"{p.relative_to(src)}:{i}: {ln.strip()}" for p in sorted(src.rglob("*.py"))
            for i, ln in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if _COUNT_S.search(ln)]
    assert not hits, "use outputs.counted:\n" + "\n".join(hits)
