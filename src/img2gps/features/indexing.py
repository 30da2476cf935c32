"""Gallery indexing: decode, global embedding and SIFT of many photos, on one core, a process pool or Ray.

One extraction function, `extract_batch`, serves every engine: `local` calls it in this process, `pool` in a
spawn-started process pool (one torch/BLAS/OpenCV thread per worker), `ray` as a Ray Data `map_batches` over a
local Ray (started here with `workers` CPUs) or the cluster named by RAY_ADDRESS. Photo bytes are read and
content-hashed by the driver and shipped to the workers in batches, so workers need no access to the photo
folder; results come back to the driver, which writes them to the per-photo caches (embeddings:
features/cache.FeatureCache, keypoints: verification/local.KeypointCache, both keyed by the photo's SHA-1) as
they arrive. A killed fit therefore resumes where it stopped: `ensure_features` skips every cached photo.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import DataError, PhotoError
from .cache import FeatureCache
from .rootsift import FeatureConfig, KeypointCache

ENGINES = ("local", "pool", "ray")


@dataclass
class IndexingConfig:
    """How gallery features are computed (never part of a model: results do not depend on it).

    workers: processes (pool) or Ray CPUs (local Ray); 0 = all cores (os.cpu_count()).
    engine: 'local' (one process; also chosen by 'pool' when workers == 1 or too few photos), 'pool', 'ray'.
    batch: photos per task. min_pool: fewer photos to compute than this run in-process (a worker's start-up,
    importing torch and loading the encoder, costs seconds). progress: photos/s and ETA lines on stderr.
    """

    workers: int = 0
    engine: str = "pool"
    batch: int = 8
    min_pool: int = 32
    progress: bool = False
    chunk: int = 256  # photos whose bytes are in flight at once (bounds driver and object-store memory)

    def n_workers(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    def check(self) -> None:
        if self.engine not in ENGINES:
            raise DataError(f"--engine {self.engine!r}: choose one of {', '.join(ENGINES)}")
        if self.workers < 0 or self.batch < 1:
            raise DataError("--workers must be >= 0 (0 = all cores) and batch >= 1")


@dataclass(frozen=True)
class ExtractSpec:
    """What to compute per photo: a global embedding (`embed`: encoder name) and/or keypoints (`features`)."""

    embed: str | None = None
    features: FeatureConfig | None = None


@dataclass
class PhotoFeatures:
    embedding: np.ndarray | None = None  # (D,) float32, not normalised
    keypoints: object | None = None  # verification.local.Keypoints
    error: str | None = None  # one-line reason when the photo could not be used


def extract_photo(data: bytes, spec: ExtractSpec, name: str = "photo") -> PhotoFeatures:
    """One photo's bytes -> its features, exactly as the in-process fit computed them (embedding from a decode
    at the encoder's load side, SIFT from the full-size decode). Errors become PhotoFeatures.error."""
    from ..photos import open_image
    from .encoders import get_encoder
    from .rootsift import extract

    out = PhotoFeatures()
    try:
        if spec.embed:
            enc = get_encoder(spec.embed)
            out.embedding = enc.embed([open_image(data, max_side=enc.load_side)])[0].astype(np.float32)
        if spec.features is not None:
            out.keypoints = extract(open_image(data), spec.features)
    except PhotoError as e:
        out.error = e.problem
    return out


def _one_thread() -> None:
    """A pool or Ray worker's setting, for its whole life: one thread for torch, OpenCV and BLAS."""
    import cv2
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    threadpool_limits(1)


@contextlib.contextmanager
def one_thread():
    """The workers' setting (_one_thread) inside, restored after: in-process extraction computes with one thread
    too, because sums taken in another order change an embedding's last bits, and a cached embedding must not
    depend on which process computed it."""
    import cv2
    import torch
    from threadpoolctl import threadpool_limits

    n, c = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(n)
        cv2.setNumThreads(c)


def extract_batch(batch: dict, spec: ExtractSpec) -> dict:
    """The one extraction function of every engine. batch: {'key': (B,) str, 'name': (B,) str, 'data': (B,) bytes}
    -> {'key', 'pid' (the process that computed it), 'result' (pickled PhotoFeatures)}."""
    keys, names, datas = list(batch["key"]), list(batch["name"]), list(batch["data"])
    res = [pickle.dumps(extract_photo(bytes(d), spec, str(n))) for d, n in zip(datas, names)]
    return {"key": np.array(keys, dtype=object), "pid": np.full(len(keys), os.getpid(), np.int64),
            "result": np.array(res, dtype=object)}


def _pool_task(batch: dict, spec: ExtractSpec) -> dict:
    return extract_batch(batch, spec)


def _ray_task(batch: dict, spec: ExtractSpec) -> dict:
    _one_thread()
    return extract_batch(batch, spec)


class Progress:
    """Photos/s and ETA, one line on stderr at most every `every` seconds (and at the end)."""

    def __init__(self, total: int, label: str, enabled: bool, every: float = 5.0):
        self.total, self.label, self.enabled, self.every = total, label, enabled and total > 0, every
        self.done, self.t0, self.last = 0, time.perf_counter(), 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self.last >= self.every or self.done >= self.total):
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(f"{self.label}: {self.done}/{self.total} photos, {rate:.1f} photos/s, ETA {eta:.0f} s",
                  file=sys.stderr, flush=True)


@dataclass
class IndexingStats:
    computed: int = 0
    cached: int = 0
    pids: set = field(default_factory=set)
    errors: list = field(default_factory=list)  # (image id, reason)
    seconds: float = 0.0


def _batches(items: list[tuple[str, str, bytes]], size: int) -> Iterator[dict]:
    for s in range(0, len(items), size):
        part = items[s:s + size]
        yield {"key": np.array([k for k, _, _ in part], dtype=object), "name": np.array([n for _, n, _ in part], dtype=object),
               "data": np.array([d for _, _, d in part], dtype=object)}


def _run_local(items, spec, cfg) -> Iterator[dict]:
    for b in _batches(items, cfg.batch):
        with one_thread():  # as the pool and Ray workers compute: the same bytes whichever engine ran
            out = extract_batch(b, spec)
        yield out


class _Pool:
    """A spawn process pool whose workers never see Ctrl-C: the terminal sends SIGINT to the whole process group,
    and a worker interrupted while it imports torch would print its own traceback ("Exception in initializer").
    The parent alone handles the interrupt and stops the workers (terminate)."""

    def __init__(self, n: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.mp = mp
        self.ex = ProcessPoolExecutor(n, mp_context=mp.get_context("spawn"), initializer=_one_thread)
        self.workers: list = []

    def run(self, items, spec, cfg) -> Iterator[dict]:
        before = {p.pid for p in self.mp.active_children()}
        with _sigint_blocked():  # workers are spawned inside submit() and inherit the blocked SIGINT
            futs = deque(self.ex.submit(_pool_task, b, spec) for b in _batches(items, cfg.batch))
        self.workers += [p for p in self.mp.active_children() if p.pid not in before]
        while futs:  # a consumed batch's result is dropped at once, not kept until the whole chunk is done
            yield futs.popleft().result()

    def terminate(self) -> None:
        """Stop the workers now (after an interrupt: they ignore SIGINT and would finish their batches first)."""
        for p in self.workers:
            if p.is_alive():
                p.terminate()

    def close(self) -> None:
        self.ex.shutdown(cancel_futures=True)


@contextlib.contextmanager
def _sigint_blocked():
    """SIGINT blocked in this thread inside. A process spawned here inherits the blocked mask through fork and exec,
    so it never handles a Ctrl-C; this process still does (the kernel hands it to another of its threads, or
    delivers it when the block ends), so no interrupt is lost."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _ray_start(cfg: IndexingConfig) -> bool:
    """Connect to RAY_ADDRESS, or start a local Ray with cfg.n_workers() CPUs; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    addr = os.environ.get("RAY_ADDRESS")
    kw = {} if addr else {"num_cpus": cfg.n_workers(), "object_store_memory": 256 * 2**20}
    ray.init(address=addr or None, include_dashboard=False, log_to_driver=False, configure_logging=False, **kw)
    return True


def _run_ray(items, spec, cfg) -> Iterator[dict]:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    rows = [{"key": k, "name": n, "data": d} for k, n, d in items]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, (len(rows) + cfg.batch - 1) // cfg.batch))
    out = ds.map_batches(_ray_task, fn_kwargs={"spec": spec}, batch_size=cfg.batch, batch_format="numpy",
                         num_cpus=1, concurrency=cfg.n_workers() if not os.environ.get("RAY_ADDRESS") else None)
    yield from out.iter_batches(batch_size=None, batch_format="numpy")


def ensure_features(ds, spec: ExtractSpec, cfg: IndexingConfig | None = None, keys: Sequence[str] | None = None,
                    label: str = "indexing", on_error: Callable[[str, str], None] | None = None) -> IndexingStats:
    """Make the caches hold `spec`'s features for every photo of GeoDataset `ds` (only missing ones computed).

    on_error(image_id, reason) is called for a photo that cannot be decoded; without it PhotoError is raised
    naming the photo. Raises DataError for a bad engine/workers setting.
    """
    cfg = cfg or IndexingConfig()
    cfg.check()
    t0 = time.perf_counter()
    keys = list(keys) if keys is not None else [ds.content_key(i) for i in range(len(ds))]
    ecache = FeatureCache(f"embed-{spec.embed}") if spec.embed else None
    kcache = KeypointCache(spec.features) if spec.features is not None else None

    def cached(k: str) -> bool:
        return (ecache is None or ecache.get(k) is not None) and (kcache is None or kcache.has(k))

    todo = [i for i, k in enumerate(keys) if not cached(k)]
    stats = IndexingStats(cached=len(keys) - len(todo))
    engine = cfg.engine
    if engine == "pool" and (cfg.n_workers() == 1 or len(todo) < max(cfg.min_pool, 2)):
        engine = "local"
    prog = Progress(len(todo), label, cfg.progress)
    started_ray, pool = False, None
    if todo and engine == "ray":
        started_ray = _ray_start(cfg)
    elif todo and engine == "pool":
        pool = _Pool(min(cfg.n_workers(), len(todo)))
    try:
        for s in range(0, len(todo), cfg.chunk):
            idx = todo[s:s + cfg.chunk]
            items = [(keys[i], ds.ids[i], ds.read(i)) for i in idx]
            by_key = {keys[i]: i for i in idx}
            runner = _run_ray(items, spec, cfg) if engine == "ray" else pool.run(items, spec, cfg) if pool else \
                _run_local(items, spec, cfg)
            for out in runner:
                for k, pid, blob in zip(out["key"], out["pid"], out["result"]):
                    f: PhotoFeatures = pickle.loads(blob)
                    name = ds.ids[by_key[str(k)]]
                    if f.error:
                        if on_error is None:
                            raise PhotoError(name, f"{f.error} (gallery photo {name})")
                        on_error(name, f.error)
                        stats.errors.append((name, f.error))
                        continue
                    if ecache is not None:
                        ecache.put(str(k), f.embedding)
                    if kcache is not None:
                        kcache.put(str(k), f.keypoints, remember=False)  # read back later, bounded
                    stats.computed += 1
                    stats.pids.add(int(pid))
                prog.update(len(out["key"]))
    except BaseException:  # Ctrl-C above all: the workers ignore it, so stop them here
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.close()
        if started_ray:
            import ray

            ray.shutdown()
    stats.seconds = time.perf_counter() - t0
    return stats
