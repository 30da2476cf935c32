"""ONNX export of a model's query encoder, and an onnxruntime encoder that can stand in for the PyTorch one.

Only the network is exported (input: the encoder's own preprocessed NCHW float32 batch; output: the pooled
embedding), so resizing/normalising stays in one place (Encoder.preprocess) and both runtimes see identical input.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..features.cache import user_cache_dir
from ..outputs import wrote

ONNX_INPUT, ONNX_OUTPUT = "input", "embedding"
DEFAULT_TOLERANCE = 1e-3  # max abs difference on embeddings whose entries are O(1); float32 noise is ~1e-5


def query_encoder_of(predictor):
    """The frozen encoder a predictor embeds queries with (knn, rerank's shortlist), or a clear error for methods that
    have none."""
    enc = getattr(predictor, "query_encoder", None)
    if enc is None:
        raise ModelError(f"{predictor.spec}: ONNX export needs a method that embeds queries with a global encoder "
                         "(e.g. knn:embed=lite0); this model has none")
    return enc


def _pooled_module(encoder):
    """The encoder's torch network plus the exact pooling Encoder.embed applies, as one nn.Module."""
    import torch

    net = encoder.torch_module() if hasattr(encoder, "torch_module") else None
    if net is None:
        raise ModelError(f"encoder {encoder.name} already runs on onnxruntime (no PyTorch network to export)")
    family = encoder.family

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            if family == "effnet-lite":
                return self.net.extract_features(x).mean(dim=(2, 3))
            if family == "torchvision-effnet":
                return self.net.avgpool(self.net.features(x)).flatten(1)
            return self.net(x)

    return Pooled().eval()


@dataclass
class ExportReport:
    path: Path
    encoder: str
    dim: int
    n_checked: int
    max_abs_diff: float
    size_bytes: int

    @property
    def weights_path(self) -> Path:
        return self.path

    def line(self) -> str:
        return (wrote(self.path) + f" ({self.size_bytes / 2**20:.1f} MiB, encoder {self.encoder}, dim {self.dim}); "
                f"max abs diff vs PyTorch on {self.n_checked} images: {self.max_abs_diff:.2e}")


def _check_images(encoder, model_dir: Path | None, n: int):
    """Real gallery thumbnails when the model has them (what queries look like), else seeded noise images."""
    from PIL import Image

    ims = []
    if model_dir is not None and (model_dir / "thumbs").is_dir():
        for p in sorted((model_dir / "thumbs").glob("*.jpg"))[:n]:
            with Image.open(p) as im:
                ims.append(im.convert("RGB"))
    rng = np.random.default_rng(0)
    while len(ims) < max(n, 2):
        ims.append(Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)))
    return ims


def export_onnx(predictor, out: str | Path, model_dir: str | Path | None = None, n_check: int = 8,
                opset: int = 17, tolerance: float = DEFAULT_TOLERANCE) -> ExportReport:
    """Write the query encoder (network + pooling) to ONNX, then compare onnxruntime with PyTorch on real inputs."""
    import onnx
    import torch

    encoder = query_encoder_of(predictor)
    module = _pooled_module(encoder)
    out = Path(out)
    if out.is_dir():
        raise ModelError(f"{out}: is a folder; give a file name such as encoder.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    dummy = torch.from_numpy(encoder.preprocess(_check_images(encoder, None, 2)))
    try:
        # The TorchScript exporter needs no extra packages (the dynamo one needs onnxscript); its warnings are noise.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (dummy,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                              dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}})
        m = onnx.load(str(tmp))
        meta = {"img2gps.encoder": encoder.name, "img2gps.input_size": str(encoder.size),
                "img2gps.dim": str(encoder.dim), "img2gps.model_spec": predictor.spec,
                "img2gps.data_fingerprint": str(predictor.gallery_fingerprint or "")}
        for k, v in meta.items():
            entry = m.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(m, str(tmp))
        os.replace(tmp, out)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"ONNX export of encoder {encoder.name} failed: {type(e).__name__}: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)

    x = encoder.preprocess(_check_images(encoder, Path(model_dir) if model_dir else None, n_check))
    with torch.inference_mode():
        ref = module(torch.from_numpy(x)).numpy()
    got = OnnxEncoder(out, encoder).run(x)
    diff = float(np.max(np.abs(got - ref)))
    report = ExportReport(out, encoder.name, int(ref.shape[1]), len(x), diff, out.stat().st_size)
    if not diff <= tolerance:
        raise ModelError(f"{out}: ONNX output differs from PyTorch by {diff:.2e} (> {tolerance:g}); export not usable")
    return report


class OnnxEncoder:
    """Same contract as features.encoders.Encoder.embed (list of PIL -> (N, dim) float32), run by onnxruntime."""

    def __init__(self, path: str | Path, base):
        import onnx
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: ONNX file not found (create it with `img2gps export --model DIR --onnx {path}`)")
        try:
            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception as e:
            raise ModelError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
        exported = props.get("img2gps.encoder")
        if exported != base.name:
            raise ModelError(f"{path}: exported from encoder {exported or 'unknown'}, but this model uses {base.name}")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.base, self.path = base, path
        self.name, self.size, self.dim, self.family = base.name, base.size, base.dim, "onnx"

    @property
    def load_side(self) -> int:
        return self.base.load_side

    def preprocess(self, images):
        return self.base.preprocess(images)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([ONNX_OUTPUT], {ONNX_INPUT: np.ascontiguousarray(x, np.float32)})[0].astype(np.float32)

    def embed(self, images) -> np.ndarray:
        return self.run(self.base.preprocess(images))


def cached_onnx_path(model_dir: Path, manifest: dict) -> Path:
    """Where `--runtime onnx` keeps an automatic export: keyed by the model (a fine-tuned encoder differs per model)."""
    key = json.dumps([manifest.get("spec"), manifest.get("data_fingerprint"), manifest.get("created"),
                      manifest.get("package_versions", {}).get("torch")], sort_keys=True)
    return user_cache_dir() / "onnx" / f"model-{hashlib.sha1(key.encode()).hexdigest()[:16]}.onnx"
