"""The README's zoo table is generated from summarize() on the meta device (tests/cli/test_readme.py): the meta device
gives the same summary as real tensors."""
import pytest
import torch

from cnnrun import summarize
from tests.zoo.helpers import zoo_spec


@pytest.mark.parametrize("name,shape", [("lenet5", (1, 32, 32)), ("inception", (3, 32, 32)), ("sppnet", (3, 20, 28)),
                                        ("netvlad", (3, 32, 32)), ("deepface", (1, 72, 72)), ("cnn1d", (1, 40)),
                                        ("c3d", (1, 8, 16, 16)), ("mobilenet_v2", (3, 64, 64))])
def test_meta_device_summary_equals_the_summary_on_real_tensors(name, shape):
    spec = zoo_spec(name)
    with torch.device("meta"):
        meta = summarize(spec, shape, 10)
    assert meta == summarize(spec, shape, 10)
