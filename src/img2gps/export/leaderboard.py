"""Export a fitted model in the course leaderboard's format: model.py + preprocess.py + model.pt (+ README.md).

The backend imports model.py alone (numpy, pandas, torch, torchvision, scikit-learn, opencv; no internet), builds
`Model(weights_path="__no_weights__.pth")`, loads model.pt keeping only tensors whose key and shape match the fresh
module, and scores `predict(batch)` by mean haversine distance. So model.py (templates/model.py with a CONFIG
literal written here) defines every network itself, every tensor's shape is fixed in CONFIG, and all the method's
numbers (gallery embeddings, keypoints, positions, trained weights) travel in model.pt.

Exportable: mean-coordinate, knn (embed lite0/lite1/lite2 or regression), regression, contrastive, rerank.
Refused with a one-line reason: ONNX-only encoders (dinov2s-imgfocus: the backend has no onnxruntime), online
torchvision backbones (b0..b3).
"""
from __future__ import annotations

import copy
import importlib.util
import os
import pprint
import shutil
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..answer_kinds import FALLBACK, OWN, SCENE
from ..data.outdir import atomic_dir
from ..errors import ModelError
from ..predictors.spec import export_fields
from ..outputs import wrote

TEMPLATES = Path(__file__).parent / "templates"
FILES = ("model.py", "preprocess.py", "model.pt", "README.md")
CONFIG_MARK = "CONFIG = {}  # @CONFIG@ (written by img2gps export)"


@dataclass
class LeaderboardReport:
    path: Path  # the folder written
    spec: str
    n_tensors: int
    size_bytes: int  # model.pt
    check_n: int = 0  # gallery thumbnails located by both img2gps and the exported model.py
    check_max_m: float = float("nan")  # largest distance between their answers, metres

    @property
    def weights_path(self) -> Path:
        return self.path / "model.pt"

    def line(self) -> str:
        check = (f"; model.py vs img2gps on {self.check_n} gallery thumbnails: max {self.check_max_m:.3g} m apart"
                 if self.check_n else "")
        return (wrote(f"{self.path}/") + f" (model.py, preprocess.py, model.pt {self.size_bytes / 2**20:.1f} MiB with "
                f"{self.n_tensors} tensors, README.md) for {self.spec}{check}")


# ----- per-method contents ----------------------------------------------------------------------------------------
def _t(a, dtype=None):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=dtype)))


def _check_lite(encoder, spec: str) -> None:
    if encoder.family == "dinov2-onnx":
        raise ModelError(f"{spec}: encoder {encoder.name} is ONNX-only and the leaderboard backend has no "
                         "onnxruntime; fit with embed=lite0 (or lite1/lite2) to export for the leaderboard")
    if encoder.family != "effnet-lite":
        raise ModelError(f"{spec}: encoder {encoder.name} loads torchvision weights online; the leaderboard export "
                         "defines EfficientNet-Lite only (use lite0/lite1/lite2)")


def _lite_weights(net) -> dict:
    return {f"encoder.{k}": v.detach().cpu().clone() for k, v in net.state_dict().items() if not k.startswith("_fc.")}


def _frozen_encoder(encoder, spec: str) -> tuple[dict, dict]:
    """A pretrained encoder as used by knn/rerank: pooled features of the whole network, no rounding."""
    _check_lite(encoder, spec)
    cfg = {"variant": int(encoder.variant), "input_size": int(encoder.size), "shrink_side": int(encoder.load_side),
           "norm": "lite", "round_after": None}
    return cfg, _lite_weights(encoder.torch_module())


def _trained_network(st, spec: str) -> tuple[dict, dict]:
    """regression / contrastive from their fitted state (predictors.trained.state): pretrained EfficientNet with the
    trained blocks put back, plus the head."""
    import torch.nn as nn

    from ..predictors.trained.trunk import Trunk

    trunk = st.trunk
    enc = trunk.encoder
    _check_lite(enc, spec)
    net = copy.deepcopy(enc.torch_module())
    view = types.SimpleNamespace(name=enc.name, family=enc.family, size=enc.size, dim=enc.dim,
                                 load_side=enc.load_side, torch_module=lambda: net)
    mirror = Trunk(view, trunk.train_blocks, trunk.size)  # its frozen/tail modules are `net`'s own modules
    body = nn.Sequential(mirror.frozen, mirror.tail) if st.full else mirror.tail
    body.load_state_dict(st.net.body.state_dict())  # trained tail (or whole fine-tuned backbone) into `net`
    n = len(net._blocks)
    round_after = None if st.full else (n + 1 if trunk.train_blocks == 0 else n - trunk.train_blocks)
    cfg = {"variant": int(enc.variant), "input_size": int(trunk.size), "shrink_side": int(enc.load_side),
           "norm": "lite", "round_after": round_after}
    state = _lite_weights(net)
    state.update({f"head.{k}": v.detach().cpu().clone() for k, v in st.net.head.state_dict().items()})
    return cfg, state


def _head_config(st, c) -> dict:
    """The head's layout from (state, config): the state says which head (head_kind), the config its sizes."""
    channels = int(st.trunk.out_channels)
    if st.head_kind == "regression":
        return {"kind": "regression", "channels": channels, "heads": c.heads, "hidden": c.hidden}
    return {"kind": "projection", "channels": channels, "pool": c.pool, "heads": c.heads, "hidden": c.hidden,
            "dim": c.dim}


def _gallery(vectors, en) -> dict:
    return {"gallery_vectors": _t(vectors, np.float32), "gallery_en": _t(en, np.float64)}


def _check_options(p, index) -> None:
    """Each config field says in its spec (`opt(export=...)`) whether the exported model.py reproduces it
    ("model": written into CONFIG) or it only shapes the fit or the radius ("fit"). Any other option set away
    from its default (e.g. one added to the method later) is refused rather than silently dropped."""
    import dataclasses

    kind = getattr(index, "kind", "flat")
    if kind != "flat":
        raise ModelError(f"{p.spec}: its {kind} faiss index is approximate and the exported model searches exactly; "
                         "refit with index=flat to export")

    fresh, handled = type(p.config)(), export_fields(type(p.config), "model", "fit")
    extra = [f.name for f in dataclasses.fields(p.config) if f.name not in handled
             and getattr(p.config, f.name) != getattr(fresh, f.name)]
    if extra:
        raise ModelError(f"{p.spec}: option(s) {', '.join(extra)} are not reproduced by the leaderboard export; "
                         "fit without them to export")


def _model_options(c) -> dict:
    """The config's options that the exported model.py reads (spec: export="model"), in field order."""
    return {k: getattr(c, k) for k in export_fields(type(c), "model")}


def _mean_coordinate(p) -> tuple[dict, dict]:
    return {"method": "mean-coordinate"}, {"centre": _t(p.centre, np.float64)}


def _regression(p) -> tuple[dict, dict]:
    """From the model's (state, config): predictors.trained.state.RegressionState and RegressionConfig."""
    st = p.state
    enc, state = _trained_network(st, p.spec)
    cfg = {"method": "regression", "decode_side": p.query_max_side, "encoder": enc, "head": _head_config(st, p.config),
           "norm": {k: float(v) for k, v in st.norm.items()}}
    return cfg, state


def _contrastive(p) -> tuple[dict, dict]:
    """From the model's (state, config): predictors.trained.state.ContrastiveState and ContrastiveConfig."""
    st = p.state
    enc, state = _trained_network(st, p.spec)
    state.update(_gallery(st.vectors, st.en))
    cfg = {"method": "knn", "decode_side": p.query_max_side, "encoder": enc, "head": _head_config(st, p.config),
           "knn": _model_options(p.config), "frame": [st.frame.lat0, st.frame.lon0]}
    return cfg, state


def _knn(p) -> tuple[dict, dict]:
    st = p.state  # localization.knn.KNNState
    _check_options(p, st.index)
    cfg = {"method": "knn", "decode_side": p.query_max_side, "knn": _model_options(p.config),
           "frame": [st.frame.lat0, st.frame.lon0]}
    if p.embedder is not None:  # embed=regression: the trained model's 256-d layer, from its (state, config)
        cfg["encoder"], state = _trained_network(p.embedder.state, p.embedder.spec)
        cfg["head"] = _head_config(p.embedder.state, p.embedder.config)
    else:
        cfg["encoder"], state = _frozen_encoder(p.query_encoder, p.spec)
    state.update(_gallery(st.vectors, st.en))
    return cfg, state


def _rerank(p) -> tuple[dict, dict]:
    """From the model's (state, config): predictors.rerank.RerankState and RerankConfig."""
    st, c = p.state, p.config
    _check_options(p, st.knn.index)
    enc, state = _frozen_encoder(st.encoder, p.spec)
    state.update(_gallery(st.knn.vectors, st.en))
    kps = list(st.store)  # the gallery's keypoints, streamed from the model's keypoint store
    state.update({"kp_xy": _t(np.concatenate([k.xy for k in kps]), np.float32),
                  "kp_desc": _t(np.concatenate([k.desc for k in kps]), np.uint8),
                  "kp_counts": _t([len(k) for k in kps], np.int64)})
    if st.codebook is not None:
        state.update({"vlad_centroids": _t(st.codebook.centroids, np.float32),
                      "vlad_gallery": _t(st.vlad, np.float32)})
    r = _model_options(c)
    # A verified photo's position is the consensus whatever its kind unless calibration chose another answer for
    # scenes seen from elsewhere; telling those apart needs the pose stage, which model.py does not carry.
    choice = st.calibrations[0].answer_choice
    if choice.get(SCENE, OWN) != OWN:
        raise ModelError(f"{p.spec}: this model answers scenes seen from elsewhere with {choice[SCENE]!r}, which "
                         "the leaderboard model.py cannot reproduce; fit it with rerank:answer=own to export it")
    r["fallback_answer"] = choice.get(FALLBACK, OWN)
    r.update(max_iters=int(c.verify_config.max_iters), z=[[float(m), float(s)] for m, s in st.zstats])
    cfg = {"method": "rerank", "decode_side": p.query_max_side, "encoder": enc, "rerank": r,
           "frame": [st.knn.frame.lat0, st.knn.frame.lon0]}
    return cfg, state


BUILDERS = {"mean-coordinate": _mean_coordinate, "knn": _knn, "regression": _regression,
            "contrastive": _contrastive, "rerank": _rerank}


def leaderboard_contents(predictor) -> tuple[dict, dict]:
    """(CONFIG for model.py, state dict for model.pt) of a fitted predictor, or a one-line ModelError."""
    name = predictor.name
    if name not in BUILDERS:
        raise ModelError(f"{predictor.spec}: method {name} has no leaderboard export (exportable: "
                         f"{', '.join(BUILDERS)})")
    cfg, state = BUILDERS[name](predictor)
    cfg = {"spec": predictor.spec, **cfg}
    cfg["buffers"] = {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in state.items()
                      if not k.startswith(("encoder.", "head."))}
    return cfg, state


# ----- writing ------------------------------------------------------------------------------------------------------
def render_model_py(cfg: dict) -> str:
    text = (TEMPLATES / "model.py").read_text()
    if CONFIG_MARK not in text:
        raise ModelError(f"{TEMPLATES / 'model.py'}: template lacks its CONFIG line")
    return text.replace(CONFIG_MARK, "CONFIG = " + pprint.pformat(cfg, width=110, sort_dicts=False))


def import_model_py(path: Path, name: str = "img2gps_leaderboard_model"):
    """Import an exported model.py by path (as the evaluator does)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    keep, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ inside the submission
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = keep
    return mod


def _readme(predictor, cfg: dict, size: int) -> str:
    fp = predictor.gallery_fingerprint or "?"
    n = len(predictor.gallery) if predictor.gallery is not None else 0
    parts = (["network weights"] if "encoder" in cfg else []) + sorted(cfg["buffers"])
    return f"""# img2gps leaderboard submission: `{predictor.spec}`

Exported by `img2gps export --format leaderboard` from a model fitted on {n} gallery photos
(data fingerprint `{fp}`). Upload these three files:

| file | what |
|---|---|
| `model.py` | `Model`: the network(s) and the method ({cfg['method']}), defined in the file itself; `predict(batch)` returns [latitude, longitude] in degrees |
| `preprocess.py` | `prepare_data(csv_path)` -> (list of image paths, labels) |
| `model.pt` | state dict, {size / 2**20:.1f} MiB: every tensor `Model` needs ({', '.join(parts)}) |

Needs numpy, pandas, torch, Pillow{', opencv-python' if cfg['method'] == 'rerank' else ''}; no internet, no img2gps.
Check locally as the leaderboard does (a CSV with an image column and Latitude/Longitude):

    python -m img2gps.export.harness --model model.py --preprocess preprocess.py --weights model.pt --csv val.csv
"""


def export_leaderboard(predictor, out: str | Path, model_dir: str | Path | None = None,
                       n_check: int = 3) -> LeaderboardReport:
    """Write OUT/{model.py, preprocess.py, model.pt, README.md} atomically for a fitted predictor.

    After writing, the exported Model is built and loaded from the files (every tensor must load) and, when the
    model directory has thumbnails, compared with img2gps's own answer on `n_check` of them.
    Raises ModelError (one line) for methods that cannot be exported and for an unusable OUT."""
    import torch

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ModelError(f"{out}: exists and is not a folder; --out names the folder to write the three files to")
    if out.is_dir() and any(p.name not in (*FILES, "__pycache__") for p in out.iterdir()):
        raise ModelError(f"{out}: folder holds other files; give an empty or new folder")
    cfg, state = leaderboard_contents(predictor)
    with atomic_dir(out) as tmp:
        (tmp / "model.py").write_text(render_model_py(cfg))
        shutil.copyfile(TEMPLATES / "preprocess.py", tmp / "preprocess.py")
        torch.save(state, tmp / "model.pt")
        size = (tmp / "model.pt").stat().st_size
        (tmp / "README.md").write_text(_readme(predictor, cfg, size))
        model = _load_exported(tmp, state)
        n, worst = _compare(predictor, model, Path(model_dir) if model_dir else None, n_check)
    return LeaderboardReport(out, predictor.spec, len(state), size, n, worst)


def _load_exported(folder: Path, state: dict):
    """Build Model from the written files and load model.pt strictly: every tensor must be there, shape-exact."""
    import torch

    mod = import_model_py(folder / "model.py", f"img2gps_export_check_{os.getpid()}")
    try:
        model = mod.Model(weights_path="__no_weights__.pth")
        fresh = model.state_dict()
        bad = [k for k, v in state.items() if k not in fresh or tuple(fresh[k].shape) != tuple(v.shape)]
        missing = [k for k in fresh if k not in state]
        if bad or missing:
            raise ModelError(f"{folder / 'model.py'}: exported tensors do not fit the model "
                             f"({len(bad)} mismatched, e.g. {bad[:2]}; {len(missing)} missing, e.g. {missing[:2]})")
        model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu"), strict=True)
    finally:
        sys.modules.pop(mod.__name__, None)
    return model.eval()


def _compare(predictor, model, model_dir: Path | None, n: int) -> tuple[int, float]:
    from ..geo import haversine_m

    if model_dir is None or n <= 0 or not (model_dir / "thumbs").is_dir():
        return 0, float("nan")
    paths = sorted((model_dir / "thumbs").glob("*.jpg"))[:n]
    if not paths:
        return 0, float("nan")
    ours = predictor.predict([p.read_bytes() for p in paths], top_k=1)
    theirs = model.predict([str(p) for p in paths])
    d = [float(haversine_m(a.latitude, a.longitude, b[0], b[1])) for a, b in zip(ours, theirs)]
    return len(d), max(d)
