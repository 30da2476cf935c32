import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/synth.py

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Caches go to a temp dir unless the caller pins one (CI may pin one to reuse embeddings)."""
    if "IMG2GPS_CACHE" not in os.environ:
        os.environ["IMG2GPS_CACHE"] = str(tmp_path_factory.mktemp("img2gps-cache"))
    yield


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Test tensors are tiny: a second OpenMP thread only spins (4x the CPU time on a shared 2-core machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def gallery_dir(tmp_path_factory):
    from synth import make_gallery

    return make_gallery(tmp_path_factory.mktemp("gallery"))


@pytest.fixture(scope="session")
def penn91():
    p = (SHARED_DATA / "penn91").resolve()
    if not (p / "labels.csv").exists():
        pytest.skip("../shared/data/penn91 not present")
    return p


@pytest.fixture(scope="session")
def bgu_west():
    p = (SHARED_DATA / "bgu-west").resolve()
    if not (p / "labels.csv").exists():
        pytest.skip("../shared/data/bgu-west not present")
    return p
