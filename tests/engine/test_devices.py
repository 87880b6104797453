import pytest
import torch

from scalelab.engine.devices import prepare_device
from scalelab.errors import ScalelabError
from scalelab.grid.spec import Runtime


def test_auto_picks_the_cpu_without_a_gpu_and_sets_threads():
    before = torch.get_num_threads()
    try:
        device = prepare_device(Runtime(threads=1))
        assert torch.get_num_threads() == 1
        assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_cuda_without_one_is_a_user_error():
    with pytest.raises(ScalelabError, match="runtime.device"):
        prepare_device(Runtime(device="cuda"))


_FREED = """
import sys, numpy as np, psutil
from scalelab.engine.devices import release_freed_memory
rss = lambda: psutil.Process().memory_info().rss / 2**20
base = rss()
blocks = [np.ones(12_000) for _ in range(15_000)]  # 96 kB each (heap, not mmap): 1.4 GB
pin = np.ones(12_000)  # allocated after them: the heap's top stays in use
del blocks
held = rss()
release_freed_memory()
print(base, held, rss())
"""


def test_a_worker_hands_back_what_its_last_run_freed(tmp_path):
    """Under the Makefile's malloc settings (no trimming, no mmap) glibc keeps freed heap
    pages: the next run in the worker would count them as its own peak memory."""
    import subprocess
    import sys

    env = {**__import__("os").environ, "MALLOC_MMAP_MAX_": "0",
           "MALLOC_TRIM_THRESHOLD_": "68719476736"}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", _FREED], env=env, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    base, held, after = map(float, out.split())
    assert held - base > 1000  # 1.4 GB freed but still resident
    assert after - base < 300  # handed back
