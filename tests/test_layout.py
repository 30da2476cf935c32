"""The stage layout's rules (docs/architecture.md, README "Layout"), checked on the source: registry entries resolve, no private
names cross modules, stages never import predictors, no import cycle between predictors/base and registry."""
from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import pytest

import img2gps
from img2gps.predictors import registry

SRC = Path(img2gps.__file__).parent
STAGES = ("retrieval", "verification", "localization")
# what a pipeline stage never imports: the methods and everything built on them
OUTER = ("predictors", "export", "api", "cli", "server", "evaluate")
MAX_MODULE_LINES, MAX_CLASS_LINES = 400, 250


def _modules():
    return _parsed(SRC)


@functools.lru_cache(maxsize=None)
def _parsed(src: Path) -> tuple:
    """(file, module name, AST) of every module under src, parsed once per test session."""
    out = []
    for f in sorted(src.rglob("*.py")):
        rel = f.relative_to(src.parent).with_suffix("")
        # a package's __init__ keeps its name part, so relative imports resolve like any module's
        out.append((f, ".".join(rel.parts), ast.parse(f.read_text(), str(f))))
    return tuple(out)


def _imported(module: str, node: ast.ImportFrom) -> str:
    """Absolute module name of a (possibly relative) `from X import ...` inside `module`."""
    if node.level == 0:
        return node.module or ""
    pkg = module.split(".")
    base = pkg[: len(pkg) - node.level]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_every_registry_entry_resolves_to_a_module_and_class():
    assert registry.DEFAULT_METHOD in registry.REGISTRY
    for name, target in registry.REGISTRY.items():
        mod, cls = target.split(":")
        module = importlib.import_module(mod)  # raises if the file behind the entry is missing
        klass = getattr(module, cls)
        assert klass.name == name, f"{target} registers as {klass.name!r}, not {name!r}"
        assert registry.predictor_class(name) is klass
    assert sorted(registry.available_methods()) == sorted(registry.REGISTRY)


def _violations(f: str, module: str, tree: ast.AST) -> list[str]:
    bad = []
    own_modules = set()  # names bound to img2gps modules by `import img2gps.x as y` / `from . import x`
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            src = _imported(module, node)
            for a in node.names:
                if _private(a.name) and src.startswith("img2gps"):
                    bad.append(f"{f}:{node.lineno} imports {src}.{a.name}")
                if src.startswith("img2gps"):
                    own_modules.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("img2gps"):
                    own_modules.add(a.asname or a.name.split(".")[0])
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        v = node.value
        # self.other._x: a private name of another object this one holds (e.g. a composed predictor)
        held = isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name) and v.value.id in ("self", "cls")
        module_private = isinstance(v, ast.Name) and v.id in own_modules
        if held or module_private:
            bad.append(f"{f}:{node.lineno} reads {ast.unparse(node)}")
    return bad


def test_no_module_imports_or_reads_another_modules_private_names():
    bad = [v for f, module, tree in _modules() for v in _violations(f.name, module, tree)]
    assert not bad, "\n".join(bad)


def test_the_private_name_check_catches_what_it_should():
    code = ("from .knn import _embed\nfrom .. import geo\nfrom .base import BasePredictor\n"
            "class R(BasePredictor):\n    def f(self):\n        self._own(); super()._fit(1)\n"
            "        geo._helper(); return self.knn._embed_query(1)\n")
    got = _violations("rerank.py", "img2gps.predictors.rerank", ast.parse(code))
    assert sorted(got) == ["rerank.py:1 imports img2gps.predictors.knn._embed", "rerank.py:7 reads geo._helper",
                           "rerank.py:7 reads self.knn._embed_query"]


def test_stages_never_import_predictors_or_the_cli():
    bad = []
    for f, module, tree in _modules():
        if module.split(".")[1:2] and module.split(".")[1] in STAGES:
            for node in ast.walk(tree):
                names = ([_imported(module, node)] if isinstance(node, ast.ImportFrom)
                         else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                bad += [f"{module} imports {n}" for n in names
                        if n.startswith(tuple(f"img2gps.{x}" for x in OUTER))]
    assert not bad, "\n".join(bad)


def test_predictor_base_does_not_import_the_registry():
    tree = ast.parse((SRC / "predictors" / "base.py").read_text())
    names = [_imported("img2gps.predictors.base", n) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert "img2gps.predictors.registry" not in names


def test_only_modeldir_writes_the_manifest():
    writers = [f.relative_to(SRC).as_posix() for f in SRC.rglob("*.py")
               if "format_version" in f.read_text() and f.name != "modeldir.py"]
    assert not writers, writers


def test_base_predictor_load_refuses_without_a_concrete_class(tmp_path):
    from img2gps.errors import ModelError
    from img2gps.predictors.base import BasePredictor

    with pytest.raises(ModelError, match="load_model"):
        BasePredictor.load(tmp_path)


def test_modules_and_classes_stay_small():
    big = []
    for f, module, tree in _modules():
        if "templates" in f.parts:  # the leaderboard template is a standalone file, self-contained on purpose
            continue
        n = len(f.read_text().splitlines())
        if n > MAX_MODULE_LINES:
            big.append(f"{module}: {n} lines")
        big += [f"{module}.{c.name}: {c.end_lineno - c.lineno + 1} lines" for c in ast.walk(tree)
                if isinstance(c, ast.ClassDef) and c.end_lineno - c.lineno + 1 > MAX_CLASS_LINES]
    assert not big, "\n".join(big)


def _imports(module: str, tree: ast.AST):
    """(source module, imported name) of every `from X import name` and (module, None) of every `import X`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            src = _imported(module, node)
            yield from ((src, a.name) for a in node.names)
        elif isinstance(node, ast.Import):
            yield from ((a.name, None) for a in node.names)


def test_methods_never_import_another_methods_class():
    owner = {}  # method class name -> the module, or the predictors sub-package (rerank/, trained/), defining it
    for name, target in registry.REGISTRY.items():
        mod, cls = target.split(":")
        owner[cls] = mod.rsplit(".", 1)[0] if mod.count(".") > 2 else mod
    bad = []
    for f, module, tree in _modules():
        for src, name in _imports(module, tree):
            home = owner.get(name)
            if home and not module.startswith(home) and src.startswith("img2gps"):
                bad.append(f"{module} imports {name} from {src}")
    assert not bad, "\n".join(bad)


def test_methods_never_open_photos_or_read_exif():
    """Methods get a types.Query (pixels + focal length) from whoever received the photo: no method module opens
    a photo or reads its EXIF, so the query's own GPS and direction cannot reach it."""
    banned = {"open_image", "open_query", "read_meta", "read_focal35", "read_bytes", "getexif"}
    bad = []
    for f, module, tree in _modules():
        if not module.startswith("img2gps.predictors.") or module.endswith(".base"):
            continue  # base.query() opens a photo given instead of a Query, through photos.open_query
        bad += [f"{module} imports {name}" for src, name in _imports(module, tree) if name in banned]
        bad += [f"{module}:{n.lineno} calls {n.attr}" for n in ast.walk(tree)
                if isinstance(n, ast.Attribute) and n.attr in banned]
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_packages():
    """The package graph (img2gps.X -> img2gps.Y when a module of X imports one of Y) has no cycle of two."""
    edges = set()
    for f, module, tree in _modules():
        parts = module.split(".")
        if len(parts) < 3:  # top-level modules (api, photos, ...) are not packages
            continue
        for src, _ in _imports(module, tree):
            other = src.split(".")
            if len(other) >= 3 and other[0] == "img2gps" and other[1] != parts[1] and (SRC / other[1]).is_dir():
                edges.add((parts[1], other[1]))
    cycles = sorted(f"{a} <-> {b}" for a, b in edges if (b, a) in edges and a < b)
    assert not cycles, cycles


# -- the stage order, leaves and method boundaries (each checker takes the parsed modules, so a test can run it on a
# deliberately bad fake package) -----------------------------------------------------------------------------------
STAGE_ORDER = ("features", "retrieval", "verification", "localization")  # each imports only those before it
# leaves import no stage, only other leaves
LEAVES = ("types", "geo", "photos", "exif", "errors", "answer_kinds", "area", "outputs")


def _runtime_imports(module: str, tree: ast.AST):
    """Absolute names a module imports at run time (`if TYPE_CHECKING:` blocks skipped): for `from X import y`
    both X and X.y (y may be a module)."""
    def walk(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom):
                src = _imported(module, child)
                yield src
                yield from (f"{src}.{a.name}" for a in child.names)
            elif isinstance(child, ast.Import):
                yield from (a.name for a in child.names)
            yield from walk(child)
    yield from walk(tree)


def _top(name: str) -> str:
    """img2gps.X.Y -> X (the package or top-level module of an img2gps name), "" for other names."""
    parts = name.split(".")
    return parts[1] if parts[0] == "img2gps" and len(parts) > 1 else ""


def stage_order_violations(modules) -> list[str]:
    """Stage modules importing anything of img2gps but a leaf, their own stage or a stage below it."""
    bad = []
    for f, module, tree in modules:
        own = _top(module)
        if own not in STAGE_ORDER:
            continue
        allowed = set(STAGE_ORDER[:STAGE_ORDER.index(own) + 1]) | set(LEAVES)
        bad += sorted({f"{module} imports {n}" for n in _runtime_imports(module, tree)
                       if _top(n) and _top(n) not in allowed})
    return bad


def leaf_violations(modules) -> list[str]:
    """Leaf modules importing anything of img2gps that is not a leaf."""
    bad = []
    for f, module, tree in modules:
        if module.count(".") != 1 or _top(module) not in LEAVES:
            continue
        bad += sorted({f"{module} imports {n}" for n in _runtime_imports(module, tree)
                       if _top(n) and _top(n) not in LEAVES})
    return bad


def method_units(registry_map: dict[str, str]) -> dict[str, str]:
    """Method name -> the module that is the method (its registered class's module; for a class in a package's
    method.py, the whole package)."""
    out = {}
    for name, target in registry_map.items():
        mod = target.split(":")[0]
        out[name] = mod.rsplit(".", 1)[0] if mod.endswith(".method") else mod
    return out


def method_import_violations(modules, registry_map: dict[str, str]) -> list[str]:
    """A method's module importing another method's module (shared logic belongs in a stage) or the registry (a
    method never builds another method by name)."""
    units = method_units(registry_map)
    reg = "img2gps.predictors.registry"

    def unit_of(name: str) -> str | None:
        return next((m for m, u in units.items() if name == u or name.startswith(u + ".")), None)

    bad = []
    for f, module, tree in modules:
        mine = unit_of(module)
        if mine is None:
            continue
        bad += sorted({f"{module} ({mine}) imports {n} ({unit_of(n) or 'registry'})"
                       for n in _runtime_imports(module, tree)
                       if unit_of(n) not in (None, mine) or n == reg or n.startswith(reg + ".")})
    return bad


def test_no_method_module_imports_another_methods_module():
    bad = method_import_violations(_modules(), registry.REGISTRY)
    assert not bad, "\n".join(bad)


def test_leaf_modules_import_no_stage():
    bad = leaf_violations(_modules())
    assert not bad, "\n".join(bad)


def test_each_stage_imports_only_the_stages_below_it():
    bad = stage_order_violations(_modules())
    assert not bad, "\n".join(bad)


def _fake(tmp_path: Path, files: dict[str, str]):
    """A fake img2gps package under tmp_path with the given modules (path -> source), parsed like the real one."""
    root = tmp_path / "img2gps"
    for rel, code in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(code)
    return _parsed(root)


def test_the_layout_checkers_catch_deliberately_bad_modules(tmp_path):
    mods = _fake(tmp_path, {
        "__init__.py": "",
        "geo.py": "from .localization.consensus import consensus\nfrom . import errors\n",  # leaf -> stage
        "errors.py": "",
        "features/__init__.py": "",
        "features/cache.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..data import x\n"
                             "from ..geo import f\n",  # fine: a type-only import and a leaf
        "features/enc.py": "from ..retrieval.database import CosineIndex\n",  # a stage above
        "retrieval/__init__.py": "",
        "retrieval/database.py": "from ..features import cache\nfrom ..predictors.knn import KNNState\n",
        "localization/__init__.py": "",
        "localization/consensus.py": "from ..verification.local import matched_points\nfrom ..cli import app\n",
        "verification/__init__.py": "",
        "verification/local.py": "import numpy\n",
        "predictors/__init__.py": "",
        "predictors/knn.py": "from .trained.embedding import embed_queries\n"  # fine: not a method's module
                             "def f():\n    from .registry import make_predictor\n",  # a method by name
        "predictors/rerank/__init__.py": "",
        "predictors/rerank/method.py": "from .state import S\n",
        "predictors/rerank/state.py": "from ..knn import KNNState\nfrom .. import knn\n",  # another method
        "predictors/trained/__init__.py": "",
        "predictors/trained/regression.py": "",
        "predictors/trained/embedding.py": "from .regression import R\n",
    })
    assert leaf_violations(mods) == ["img2gps.geo imports img2gps.localization.consensus",
                                     "img2gps.geo imports img2gps.localization.consensus.consensus"]
    stage = stage_order_violations(mods)
    assert any(v.startswith("img2gps.features.enc imports img2gps.retrieval") for v in stage)
    assert any(v.startswith("img2gps.retrieval.database imports img2gps.predictors") for v in stage)
    assert any(v.startswith("img2gps.localization.consensus imports img2gps.cli") for v in stage)
    assert not any("features.cache" in v.split(" imports ")[0] or "verification" in v.split(" imports ")[0]
                   or "localization.consensus imports img2gps.verification" in v for v in stage)
    fake_registry = {"knn": "img2gps.predictors.knn:K", "rerank": "img2gps.predictors.rerank.method:R",
                     "regression": "img2gps.predictors.trained.regression:G"}
    got = method_import_violations(mods, fake_registry)
    assert [v for v in got if v.startswith("img2gps.predictors.knn ")] == [
        "img2gps.predictors.knn (knn) imports img2gps.predictors.registry (registry)",
        "img2gps.predictors.knn (knn) imports img2gps.predictors.registry.make_predictor (registry)"]
    rest = [v for v in got if not v.startswith("img2gps.predictors.knn ")]
    assert rest and all(v.startswith("img2gps.predictors.rerank.state (rerank) imports img2gps.predictors.knn")
                        for v in rest)


def test_tests_never_read_private_names():
    """Tests check behaviour through public names: no `_private` imported from img2gps, no `x._private` read
    (Python's own sys._getframe aside)."""
    bad = []
    for f in sorted(Path(__file__).parent.rglob("*.py")):
        tree = ast.parse(f.read_text(), str(f))
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("img2gps"):
                bad += [f"{f.name}:{n.lineno} imports {a.name}" for a in n.names if _private(a.name)]
            elif isinstance(n, ast.Attribute) and _private(n.attr) and ast.unparse(n) != "sys._getframe":
                bad.append(f"{f.name}:{n.lineno} reads {ast.unparse(n)}")
    assert not bad, "\n".join(bad)
