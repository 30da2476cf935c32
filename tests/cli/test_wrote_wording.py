"""Every command announces a file or folder it wrote in one wording, from one place (outputs.wrote): the fresh read
of issue 30 found "map: PATH" beside "wrote PATH" (and "report: ...", "written to ...")."""
from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "img2gps"
# "wrote ..." anywhere, or a printed line that names a written file otherwise
OTHER_WORDING = re.compile(r"""f?["']wrote |(?:echo|print)\(f?["'] *(?:written to |map: |report: )""")


def test_no_module_words_a_written_file_itself():
    found = [f"{p.relative_to(SRC)}:{i}: {line.strip()}"
             for p in SRC.rglob("*.py") if p.name != "outputs.py"
             for i, line in enumerate(p.read_text().splitlines(), 1) if OTHER_WORDING.search(line)]
    assert found == [], "word written files with outputs.wrote:\n" + "\n".join(found)


def test_wrote_is_the_one_line():
    from img2gps.outputs import wrote

    assert wrote(Path("a") / "b.html") == f"wrote {Path('a') / 'b.html'}"
