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
