"""The README's zoo table is generated from summarize() on the meta device; it is current, and the meta device
gives the same summary as real tensors."""
import pytest
import torch

from cnnrun import summarize
from cnnrun.model.zoo import END, START, zoo_names, zoo_table
from tests.conftest import REPO
from tests.zoo.helpers import zoo_spec


def test_readme_zoo_table_is_current():
    readme = (REPO / "README.md").read_text()
    assert readme.split(START, 1)[1].split(END, 1)[0].strip() == zoo_table(), "run: python -m cnnrun.model.zoo --write"
    for name in zoo_names():
        assert f"| `{name}` |" in readme


@pytest.mark.parametrize("name,shape", [("lenet5", (1, 32, 32)), ("inception", (3, 32, 32)), ("sppnet", (3, 20, 28)),
                                        ("netvlad", (3, 32, 32)), ("deepface", (1, 72, 72)), ("cnn1d", (1, 40)),
                                        ("c3d", (1, 8, 16, 16)), ("mobilenet_v2", (3, 64, 64))])
def test_meta_device_summary_equals_the_summary_on_real_tensors(name, shape):
    spec = zoo_spec(name)
    with torch.device("meta"):
        meta = summarize(spec, shape, 10)
    assert meta == summarize(spec, shape, 10)
