"""Dashboards that explain one run (chapter 5.2, Table 5.2): a Lightning callback that writes to TensorBoard.

Switched in ``logger.dashboards`` (``conf/logger/tensorboard.yaml``); active only with the TensorBoard logger.
Tags it writes:

- ``filters/first_layer``: the first convolution's filters as an image grid;
- ``feature_maps/input`` and ``feature_maps/{shallow,middle,deep}``: a fixed validation sample and the maps after a
  shallow, a middle and a deep convolution layer (edge, local and global features), ``feature_maps/layers`` names
  them;
- ``weights/<parameter>`` and ``gradients/<parameter>``: histograms (gradients of the epoch's last optimisation
  step, accumulated and unscaled, before clipping);
- ``test/confusion_matrix`` (figure), ``test/confusion_matrix_counts`` (the counts as a table) and
  ``test/misclassified`` (misclassified test samples with their true and predicted labels), after testing;
- the model graph, traced with the first training sample (the first test sample in mode=test).

The periodic ones (filters, feature maps, histograms) are written at the end of every Nth epoch and of the last one.
Nothing here changes training: the extra forward passes run in eval mode without gradients and draw no random
numbers. With several processes (DDP) rank 0 writes everything; the confusion matrix sums every process's shard of
the test split, the misclassified samples come from rank 0's shard.
"""
from __future__ import annotations

import logging
import math
import time
import warnings
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Iterator

import pytorch_lightning as pl
import torch
from torch import nn

from cnnrun.errors import ConfigError, did_you_mean
from cnnrun.gallery import figure_image

log = logging.getLogger(__name__)

PERIODIC = ("filters", "feature_maps", "histograms")
SWITCHES = ("confusion_matrix", "misclassified", "graph")
DEFAULT_EVERY = 5          # the period that ``true`` stands for
MAX_TILES = 256            # filter tiles in one grid
MAX_MAPS = 32              # feature-map channels shown per layer
MAX_MISCLASSIFIED = 25     # samples in the misclassified grid
MIN_TILE_PX = 64           # small filters and maps are enlarged (nearest) to at least this many pixels
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass(frozen=True)
class DashboardPlan:
    """Which dashboards a run writes: periods in epochs (0: off) and on/off switches."""

    filters: int = 0
    feature_maps: int = 0
    histograms: int = 0
    confusion_matrix: bool = False
    misclassified: bool = False
    graph: bool = False

    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


def _period(key: str, value: Any) -> int:
    """A periodic dashboard's setting -> its period in epochs (0: off)."""
    if isinstance(value, dict):
        extra = [k for k in value if k != "every_n_epochs"]
        if extra:
            hint = did_you_mean(extra[0], ["every_n_epochs"])
            raise ConfigError(f"{key}.{extra[0]}", f"is not a setting of this dashboard{hint} (it takes "
                                                   "every_n_epochs)")
        key, value = f"{key}.every_n_epochs", value.get("every_n_epochs", DEFAULT_EVERY)
    if value is None or value is False:
        return 0
    if value is True:
        return DEFAULT_EVERY
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(key, f"must be true, false or a number of epochs >= 0 (0: off), got {value!r}")
    return value


def dashboard_plan(logger_cfg: dict[str, Any] | None) -> DashboardPlan:
    """The checked ``logger.dashboards`` settings; raises ConfigError naming the key at fault."""
    raw = (logger_cfg or {}).get("dashboards")
    if raw is None or raw is False:
        return DashboardPlan()
    if raw is True:
        raw = {name: True for name in PERIODIC + SWITCHES}
    if not isinstance(raw, dict):
        raise ConfigError("logger.dashboards", f"must be a mapping of dashboard switches, true or false, got {raw!r}")
    known = PERIODIC + SWITCHES
    values: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"logger.dashboards.{key}"
        if key not in known:
            raise ConfigError(path, f"is not a dashboard{did_you_mean(key, known)} (known: {', '.join(known)})")
        if key in PERIODIC:
            values[key] = _period(path, value)
        elif value is None or isinstance(value, bool):
            values[key] = bool(value)
        else:
            raise ConfigError(path, f"must be true or false, got {value!r}")
    return DashboardPlan(**values)


def make_dashboards(cfg: dict[str, Any], logger: Any) -> list[pl.Callback]:
    """The dashboards callback for a run (none without a TensorBoard logger or with every dashboard off)."""
    from pytorch_lightning.loggers import TensorBoardLogger

    plan = dashboard_plan(cfg.get("logger"))
    if not isinstance(logger, TensorBoardLogger) or not plan.any():
        return []
    return [Dashboards(plan)]


# -- rendering ---------------------------------------------------------------------------------------------------
HISTOGRAM_BINS = 64


def add_histogram(writer, tag: str, values: torch.Tensor, step: int) -> None:
    """A histogram of ``values`` in ``HISTOGRAM_BINS`` equal bins between their minimum and maximum, binned where
    the tensor lives (``torch.histc``: on the GPU only the counts travel) and written with ``add_histogram_raw``.
    Non-finite values are left out."""
    t = values.detach().flatten().float()
    t = t[torch.isfinite(t)]
    if t.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(t))
    if hi > lo:
        counts = torch.histc(t, bins=HISTOGRAM_BINS, min=lo, max=hi).tolist()
        limits = torch.linspace(lo, hi, HISTOGRAM_BINS + 1)[1:].tolist()  # each bucket's right edge
    else:  # a constant tensor: one bucket
        counts, limits = [float(t.numel())], [hi]
    writer.add_histogram_raw(tag, min=lo, max=hi, num=t.numel(), sum=float(t.sum()), sum_squares=float(t @ t),
                             bucket_limits=limits, bucket_counts=counts, global_step=step)


def _enlarge(tiles: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) tiles enlarged by an integer factor (nearest) so that small kernels and maps are visible."""
    factor = max(1, math.ceil(MIN_TILE_PX / max(tiles.shape[-2:])))
    return tiles if factor == 1 else tiles.repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def _grid(tiles: torch.Tensor, nrow: int) -> torch.Tensor:
    """(N, C, H, W) -> (3, H', W') in [0, 1], every tile scaled to its own range; thin white separators."""
    from torchvision.utils import make_grid

    return make_grid(_enlarge(tiles.detach().float().cpu()), nrow=max(1, nrow), padding=2, normalize=True,
                     scale_each=True, pad_value=1.0)


def _strip(rows: torch.Tensor) -> torch.Tensor:
    """1D signals (R, L) as one image (3, H, W) in [0, 1]: a band per signal (8 pixels, more when there are few), at
    least 2 * MIN_TILE_PX wide."""
    band = max(8, math.ceil(MIN_TILE_PX / rows.shape[0]))
    image = rows.repeat_interleave(band, 0).repeat_interleave(max(1, math.ceil(2 * MIN_TILE_PX / rows.shape[1])), 1)
    return _grid(image[None, None], 1)


def filter_grid(weight: torch.Tensor) -> torch.Tensor:
    """A convolution's weight as an image (3, H, W) in [0, 1].

    2D: one tile per filter, RGB when the filters have 3 input channels, else one grey tile per (filter, input
    channel) with a row per filter. 1D: one image, a row per (filter, input channel), a column per tap. 3D: a row per
    (filter, input channel), a tile per depth slice. Large layers show their first filters (``MAX_TILES`` tiles).
    """
    w = weight.detach().float().cpu()
    out_ch, in_ch = w.shape[:2]
    if w.dim() == 3:
        return _strip(w.reshape(out_ch * in_ch, w.shape[-1])[:MAX_TILES])
    if w.dim() == 4:
        if in_ch in (1, 3):  # grey or colour filters
            return _grid(w[:MAX_TILES], math.ceil(math.sqrt(min(out_ch, MAX_TILES))))
        per_row = min(in_ch, MAX_TILES)
        keep = max(1, MAX_TILES // per_row)
        return _grid(w[:keep, :per_row].reshape(-1, 1, *w.shape[-2:]), per_row)
    if w.dim() == 5:
        depth = w.shape[2]
        per_row = min(depth, MAX_TILES)
        keep = max(1, MAX_TILES // per_row)
        slices = w.reshape(out_ch * in_ch, depth, *w.shape[-2:])[:keep, :per_row]
        return _grid(slices.reshape(-1, 1, *w.shape[-2:]), per_row)
    raise ValueError(f"cannot render a weight of shape {tuple(w.shape)}")


def map_grid(maps: torch.Tensor) -> torch.Tensor:
    """One sample's activations (C, *spatial) as an image (3, H, W) in [0, 1].

    2D: a tile per channel (the first ``MAX_MAPS``); 3D: the middle depth slice of each channel; 1D: one image with a
    row per channel. An input with 1 or 3 channels is shown as one grey or colour image.
    """
    m = maps.detach().float().cpu()
    if m.dim() == 2:
        return _strip(m[:MAX_MAPS])
    if m.dim() == 4:
        m = m[:, m.shape[1] // 2]
    if m.dim() != 3:
        raise ValueError(f"cannot render activations of shape {tuple(m.shape)}")
    m = m[:MAX_MAPS]
    return _grid(m[:, None], math.ceil(math.sqrt(m.shape[0])))


def _sample_image(x: torch.Tensor) -> torch.Tensor:
    """One input sample (C, *spatial) as an image: grey or colour when it has 1 or 3 channels, else its channels."""
    x = x.detach().float().cpu()
    if x.dim() == 3 and x.shape[0] in (1, 3):
        return _grid(x[None], 1)
    return map_grid(x)


def conv_stages(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """(view, description, module) for a shallow, a middle and a deep convolution layer of ``model`` (fewer when it
    has fewer). The layers are the model's top-level convolution layers (blocks that contain a convolution count)
    whose output is a spatial map; models without layer records fall back to their convolution modules."""
    records = getattr(model, "records", None)
    candidates: list[tuple[str, nn.Module]] = []
    if records:
        for rec in records:
            has_conv = "conv" in rec.type or any(isinstance(m, CONV_TYPES) for m in rec.module.modules())
            if rec.depth == 0 and has_conv and len(rec.out_shape) >= 2:
                candidates.append((f"{rec.path} ({rec.type}) -> {tuple(rec.out_shape)}", rec.module))
    else:
        candidates = [(name, m) for name, m in model.named_modules() if isinstance(m, CONV_TYPES)]
    if not candidates:
        return []
    n = len(candidates)
    picks = {"shallow": 0, "middle": (n - 1) // 2, "deep": n - 1} if n >= 3 else \
        {"shallow": 0, "deep": n - 1} if n == 2 else {"shallow": 0}
    return [(view, *candidates[i]) for view, i in picks.items()]


def confusion_figure(matrix: torch.Tensor):
    """The confusion matrix (rows: true class, columns: predicted class) drawn with scikit-learn's display."""
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    n = matrix.shape[0]
    size = min(3.5 + 0.3 * n, 16)
    fig = Figure(figsize=(size, size), dpi=80)
    ax = fig.add_subplot()
    display = ConfusionMatrixDisplay(matrix.numpy()).plot(ax=ax, colorbar=False, include_values=n <= 30,
                                                          cmap="Blues", values_format="d")
    if display.text_ is not None:  # empty cells stay blank: easier to read, and cheaper to draw
        for text, count in zip(display.text_.ravel(), matrix.flatten().tolist()):
            text.set_visible(count != 0)
    total = int(matrix.sum())
    ax.set_title(f"test split: {total} samples, accuracy {int(matrix.trace()) / max(total, 1):.4f}")
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.08, top=0.94)
    return fig


def confusion_markdown(matrix: torch.Tensor) -> str:
    """The counts as a markdown table: a row per true class, a column per predicted class."""
    n = matrix.shape[0]
    lines = ["| true \\ predicted | " + " | ".join(str(j) for j in range(n)) + " |",
             "|---|" + "---:|" * n]
    for i in range(n):
        lines.append(f"| {i} | " + " | ".join(str(int(v)) for v in matrix[i]) + " |")
    return "\n".join(lines)


def _sample_tiles(x: torch.Tensor) -> torch.Tensor:
    """Samples (N, C, *spatial) as image tiles (N, 1 or 3, H, W): 2D as they are (the first channel unless there
    are 3), 3D as their middle depth slice, 1D as a row per channel."""
    x = x.detach().float().cpu()
    if x.dim() == 3:  # (N, C, L)
        return x[:, None, :3].repeat_interleave(max(1, x.shape[-1] // 8), 2)
    if x.dim() == 5:  # (N, C, D, H, W)
        x = x[:, :, x.shape[2] // 2]
    return x if x.shape[1] == 3 else x[:, :1]


def misclassified_figure(x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor):
    """A grid of misclassified samples (each scaled to its own range), each labelled with its true and predicted
    class. One image and a text per tile keep it cheap to draw."""
    from matplotlib.figure import Figure

    cols = min(5, x.shape[0])
    tiles = _enlarge(_sample_tiles(x))
    label_px, pad = 26, 4
    grid = _grid_padded(tiles, cols, pad, label_px)
    height, width = grid.shape[1:]
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    tile_h, tile_w = tiles.shape[-2:]
    for i in range(x.shape[0]):
        r, c = divmod(i, cols)
        ax.text(pad + c * (tile_w + pad), (label_px + pad) * (r + 1) + r * tile_h - 4,
                f"true {int(y[i])}\npred {int(pred[i])}", fontsize=8, color="firebrick", va="bottom",
                linespacing=1.0)
    return fig


def _grid_padded(tiles: torch.Tensor, cols: int, pad: int, label_px: int) -> torch.Tensor:
    """``tiles`` (N, C, H, W) in rows of ``cols`` on white, each with ``label_px`` of room above it: (3, H', W')."""
    n, _, h, w = tiles.shape
    tiles = tiles.float()
    low = tiles.flatten(1).min(1).values.view(-1, 1, 1, 1)
    high = tiles.flatten(1).max(1).values.view(-1, 1, 1, 1)
    tiles = ((tiles - low) / (high - low).clamp_min(1e-8)).expand(n, 3, h, w)
    rows = -(-n // cols)
    canvas = torch.ones(3, rows * (h + label_px + pad) + pad, cols * (w + pad) + pad)
    for i in range(n):
        r, c = divmod(i, cols)
        top = r * (h + label_px + pad) + label_px + pad
        left = c * (w + pad) + pad
        canvas[:, top:top + h, left:left + w] = tiles[i]
    return canvas


# -- the callback ------------------------------------------------------------------------------------------------
class Dashboards(pl.Callback):
    """Writes the dashboards of ``plan`` to the trainer's TensorBoard logger (global rank 0 only)."""

    def __init__(self, plan: DashboardPlan):
        self.plan = plan
        self.seconds: dict[str, float] = defaultdict(float)  # time spent per dashboard
        self._sample: torch.Tensor | None = None  # (1, C, *spatial): the fixed validation sample
        self._fallback: torch.Tensor | None = None  # the first training sample: without validation, and for the graph
        self._logged: dict[str, int] = {}  # periodic dashboard -> epoch last written
        self._epoch_done = -1
        self._batch_idx = -1
        self._grads_epoch = -1
        self._graph_done = False
        self._described_maps = False
        self._hook: Any = None
        self._test: dict[str, list[torch.Tensor]] = {}
        self._logits: torch.Tensor | None = None
        self._num_classes = 0
        self._matrix: torch.Tensor | None = None  # the test split's confusion matrix, summed over processes

    @contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    @staticmethod
    def _writer(trainer: pl.Trainer):
        return trainer.logger.experiment

    @staticmethod
    def _net(pl_module: pl.LightningModule) -> nn.Module:
        return getattr(pl_module, "model", pl_module)

    def _due(self, trainer: pl.Trainer, every: int, epoch: int) -> bool:
        last = trainer.max_epochs - 1 if trainer.max_epochs and trainer.max_epochs > 0 else None
        return every > 0 and ((epoch + 1) % every == 0 or epoch == last)

    @staticmethod
    def _first(batch: Any) -> torch.Tensor | None:
        """The first sample (1, C, *spatial) of a batch (x, y, ...), as the model sees it."""
        x = batch[0] if isinstance(batch, (list, tuple)) and batch else None
        return x[:1].detach().clone() if isinstance(x, torch.Tensor) and x.dim() >= 2 and len(x) else None

    # -- fit ---------------------------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._batch_idx = batch_idx
        if self._fallback is None and trainer.is_global_zero:
            self._fallback = self._first(batch)
            if self.plan.graph:
                self._log_graph(trainer, pl_module, self._fallback)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        """The feature maps' sample: the first sample of the first validation batch (the loader does not shuffle)."""
        if self._sample is None and batch_idx == 0 and dataloader_idx == 0 and trainer.is_global_zero:
            self._sample = self._first(batch)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        every, epoch = self.plan.histograms, trainer.current_epoch
        if not trainer.is_global_zero or not self._due(trainer, every, epoch) or self._grads_epoch == epoch:
            return
        batches = trainer.num_training_batches
        if math.isfinite(batches) and self._batch_idx != batches - 1:
            return  # the epoch's last step (with an endless loader: its first)
        self._grads_epoch = epoch
        with self._timed("histograms"):
            writer = self._writer(trainer)
            for name, param in self._net(pl_module).named_parameters():
                if param.grad is not None:
                    add_histogram(writer, f"gradients/{name}", param.grad, trainer.global_step)

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        self._epoch_done = epoch
        due = [name for name in PERIODIC if self._due(trainer, getattr(self.plan, name), epoch)]
        self._write_periodic(trainer, pl_module, due, epoch)

    def on_train_end(self, trainer, pl_module):
        """A run stopped before its last epoch (early stopping, max_steps) still shows its final state."""
        if not trainer.is_global_zero or self._epoch_done < 0:
            return
        late = [name for name in PERIODIC
                if getattr(self.plan, name) and self._logged.get(name) != self._epoch_done]
        self._write_periodic(trainer, pl_module, late, self._epoch_done)

    def _write_periodic(self, trainer, pl_module, names: list[str], epoch: int) -> None:
        writer, step, net = self._writer(trainer), trainer.global_step, self._net(pl_module)
        if "filters" in names:
            with self._timed("filters"):
                conv = next((m for m in net.modules() if isinstance(m, CONV_TYPES)), None)
                if conv is None:
                    log.info("dashboards: no convolution layer, so no filters to show")
                else:
                    writer.add_image("filters/first_layer", filter_grid(conv.weight), step)
        if "feature_maps" in names:
            with self._timed("feature_maps"):
                self._log_feature_maps(writer, net, step)
        if "histograms" in names:
            with self._timed("histograms"):
                for name, param in net.named_parameters():
                    add_histogram(writer, f"weights/{name}", param, step)
        for name in names:
            self._logged[name] = epoch

    @torch.no_grad()
    def _log_feature_maps(self, writer, net: nn.Module, step: int) -> None:
        stages = conv_stages(net)
        if self._sample is None:
            self._sample = self._fallback
        if self._sample is None or not stages:
            if not self._described_maps:
                log.info("dashboards: no validation sample or no convolution layer, so no feature maps")
                self._described_maps = True
            return
        seen: dict[str, torch.Tensor] = {}
        hooks = [module.register_forward_hook(lambda mod, inp, out, view=view: seen.__setitem__(view, out))
                 for view, _, module in stages]
        was_training = net.training
        try:
            net.eval()
            net(self._sample)
        finally:
            net.train(was_training)
            for h in hooks:
                h.remove()
        writer.add_image("feature_maps/input", _sample_image(self._sample[0]), step)
        for view, _, _ in stages:
            if view in seen and isinstance(seen[view], torch.Tensor):
                writer.add_image(f"feature_maps/{view}", map_grid(seen[view][0]), step)
        if not self._described_maps:
            rows = "\n".join(f"| {view} | {desc} |" for view, desc, _ in stages)
            writer.add_text("feature_maps/layers", f"| view | layer |\n|---|---|\n{rows}", step)
            self._described_maps = True

    def _log_graph(self, trainer, pl_module, example: torch.Tensor | None) -> None:
        if self._graph_done or example is None:
            return
        self._graph_done = True
        net = self._net(pl_module)
        was_training = net.training
        error: Exception | None = None
        with self._timed("graph"):
            try:
                net.eval()
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the tracer's remarks about Python values in the graph
                    self._writer(trainer).add_graph(net, example)
            except Exception as err:  # a model the tracer cannot follow: the run goes on without its graph
                error = err
            finally:
                net.train(was_training)
        if error is not None:
            warnings.warn(f"dashboards: the model graph was not logged: {type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}", RuntimeWarning, stacklevel=2)

    # -- test --------------------------------------------------------------------------------------------------
    def on_test_start(self, trainer, pl_module):
        # Every process collects its own shard's predictions (the confusion matrices add up in on_test_epoch_end);
        # only the test split: a module may reuse its test loop on other data (eval_stage names what it measures).
        self._matrix = None
        on_test_split = getattr(pl_module, "eval_stage", "test") == "test"
        if (self.plan.confusion_matrix or self.plan.misclassified) and on_test_split:
            self._test = {"pred": [], "true": [], "x": [], "y": [], "wrong": []}
            net = self._net(pl_module)
            self._num_classes = int((getattr(net, "output_shape", None) or (0,))[0])
            self._hook = net.register_forward_hook(self._keep_logits)

    def _keep_logits(self, module, inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 2:
            self._logits = output.detach()
            self._num_classes = max(self._num_classes, output.shape[1])

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.plan.graph and not self._graph_done and trainer.is_global_zero:  # mode=test: no fit before
            self._log_graph(trainer, pl_module, self._first(batch))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self._hook is None or self._logits is None:
            return
        with self._timed("test_predictions"):
            x, y = batch[0], batch[1]
            pred = self._logits.argmax(1)
            self._logits = None
            self._test["pred"].append(pred)
            self._test["true"].append(y.detach())
            have = sum(len(t) for t in self._test["y"])
            if self.plan.misclassified and trainer.is_global_zero and have < MAX_MISCLASSIFIED:
                wrong = (pred != y).nonzero().flatten()[:MAX_MISCLASSIFIED - have]
                self._test["x"].append(x[wrong].detach().cpu())
                self._test["y"].append(y[wrong].cpu())
                self._test["wrong"].append(pred[wrong].cpu())

    def on_test_epoch_end(self, trainer, pl_module):
        """The confusion matrix of the whole test split: each process counts its shard, the counts are summed."""
        if self._hook is None or not self.plan.confusion_matrix:
            return
        from torchmetrics.functional.classification import multiclass_confusion_matrix

        with self._timed("confusion_matrix"):
            n = self._num_classes
            if self._test["pred"]:
                pred, true = torch.cat(self._test["pred"]), torch.cat(self._test["true"])
                n = max(n, int(true.max()) + 1)  # labels beyond the model's outputs still count
                matrix = multiclass_confusion_matrix(pred, true, num_classes=n).float()
            else:  # a process with no test batches still takes part in the sum
                matrix = torch.zeros(n, n, device=pl_module.device)
            self._matrix = trainer.strategy.reduce(matrix, reduce_op="sum").round().long().cpu()

    def _unhook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_exception(self, trainer, pl_module, exception):
        self._unhook()

    def on_test_end(self, trainer, pl_module):
        if self._hook is None:
            return
        self._unhook()
        if not trainer.is_global_zero:
            self._test = {}
            return
        writer, step = self._writer(trainer), trainer.global_step
        if self._matrix is not None:
            with self._timed("confusion_matrix"):
                writer.add_image("test/confusion_matrix", figure_image(confusion_figure(self._matrix)), step)
                writer.add_text("test/confusion_matrix_counts", confusion_markdown(self._matrix), step)
        if self.plan.misclassified and self._test["pred"]:
            with self._timed("misclassified"):
                if sum(len(t) for t in self._test["y"]):
                    fig = misclassified_figure(torch.cat(self._test["x"]), torch.cat(self._test["y"]),
                                               torch.cat(self._test["wrong"]))
                    writer.add_image("test/misclassified", figure_image(fig), step)
                else:
                    writer.add_text("test/misclassified", "no misclassified test samples", step)
        self._test = {}
        writer.flush()
