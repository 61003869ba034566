"""fp16 mixed precision with its gradient scaler (Lightning's MixedPrecision plugin, cnnrun's non-lean step) against
torch's own recipe: autocast to float16, GradScaler.scale(loss).backward(), unscale_, clipping, GradScaler.step and
update, written in tests/train/test_stepping.py's reference loop.

On a GPU, ``trainer.precision=16-mixed`` is this path (with torch's default scaler). A CPU maps 16-mixed to bf16, which
needs no scaler, so on the CPU the test hands Lightning the plugin with torch's CPU GradScaler itself. A scaler that
starts too high and grows every few steps makes fp16 gradients overflow now and then: the skipped steps and the
scale must follow the reference's exactly.
"""
import math

import pytest
import torch
from pytorch_lightning.plugins.precision import MixedPrecision

from tests.train.test_stepping import assert_same_weights, lightning_fit, reference_fit, splits  # noqa: F401

needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
# LeNet-5's fp16 gradients on digits overflow now and then at 2**20 and above: backing off by 2 after each overflow
# and growing by 2 after every 2 good steps, the scaler skips some of the 6 steps and takes the others
OVERFLOWING = {"init_scale": 2.0 ** 21, "growth_interval": 2}
OVERRIDES = ["sched=none", "trainer.accumulate_grad_batches=2", "trainer.gradient_clip_val=0.5"]


def scaler_for(device: str, settings: dict) -> torch.amp.GradScaler:
    return torch.amp.GradScaler(device, **settings)


def trainer_args(device: str, settings: dict | None) -> dict:
    """A Trainer's precision arguments: the config's 16-mixed flag (torch's default scaler), or the plugin with a
    scaler of these settings."""
    accelerator = "gpu" if device == "cuda" else device
    if settings is None:
        return {"accelerator": accelerator, "precision": "16-mixed"}
    return {"accelerator": accelerator, "plugins": [MixedPrecision("16-mixed", device, scaler_for(device, settings))]}


@pytest.mark.parametrize("device, settings", [
    ("cpu", OVERFLOWING),
    pytest.param("cuda", OVERFLOWING, marks=needs_cuda),
    pytest.param("cuda", None, marks=needs_cuda),
])
def test_fp16_with_its_scaler_matches_torch_amp(splits, device, settings):  # noqa: F811
    cfg, initial, module, trainer, rec = lightning_fit(splits, OVERRIDES, lean=None, lean_expected=False, epochs=1,
                                                       **trainer_args(device, settings))
    scaler = trainer.precision_plugin.scaler
    assert isinstance(trainer.precision_plugin, MixedPrecision) and scaler is not None
    reference_scaler = scaler_for(device, settings or {})
    reference, steps, _ = reference_fit(cfg, initial, rec.batches, clip=0.5, accumulate=2, scaler=reference_scaler)
    tolerance = {} if device == "cpu" else {"rtol": 1e-3, "atol": 1e-4}  # cuDNN may sum in another order
    assert_same_weights(module, reference, **tolerance)
    assert scaler.state_dict() == reference_scaler.state_dict()  # the same scale after the same skips and growths
    assert trainer.global_step == steps
    if settings is OVERFLOWING:
        finite = [math.isfinite(norm) for norm in rec.norms_before_step]  # the unscaled gradients' norms
        assert not all(finite) and any(finite)  # some steps overflowed (skipped), others were taken
