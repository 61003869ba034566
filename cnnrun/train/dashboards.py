"""Dashboards that explain one run (chapter 5.2, Table 5.2): a Lightning callback that writes to TensorBoard.

Switched in ``logger.dashboards`` (``conf/logger/tensorboard.yaml``); active only with the TensorBoard logger. This
module decides what to log and when; :mod:`cnnrun.figures` draws the pictures. Tags it writes:

- ``filters/first_layer``: the first convolution's filters as an image grid;
- ``feature_maps/input`` and ``feature_maps/{shallow,middle,deep}``: a fixed validation sample and the maps after a
  shallow, a middle and a deep convolution layer (edge, local and global features), ``feature_maps/layers`` names
  them;
- ``weights/<parameter>`` and ``gradients/<parameter>``: histograms (gradients of the epoch's last optimisation
  step, accumulated and unscaled, before clipping);
- ``test/confusion_matrix`` (figure), ``test/confusion_matrix_counts`` (the counts as a table) and
  ``test/misclassified`` (misclassified test samples with their true and predicted labels), after testing;
- the model graph, traced with the first training sample (the first test sample in mode=test), its top-level nodes
  the model's layers as its config names them (``conv[0]``, ``inception[3]``), so that TensorBoard's Graphs tab
  opens on them.

The periodic ones (filters, feature maps, histograms) are written at the end of every Nth epoch and of the last one.
Like the scalars, they are written against the epoch, counted from 1; the test's pictures sit at the last epoch, where
the test's scalars are.
Nothing here changes training: the extra forward passes run in eval mode without gradients and draw no random
numbers. With several processes (DDP) rank 0 writes everything; the confusion matrix sums every process's shard of
the test split, the misclassified samples come from rank 0's shard.
"""
from __future__ import annotations

import functools
import logging
import math
import time
import warnings
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Iterator

import pytorch_lightning as pl
import torch
from torch import nn

from cnnrun.figures import (add_histogram, confusion_figure, confusion_markdown, figure_image, filter_grid,
                            map_grid, misclassified_figure, sample_image)
from cnnrun.train.dashboard_plan import PERIODIC, DashboardPlan, dashboard_plan
from cnnrun.train.deferred_writer import DeferredWriter

log = logging.getLogger(__name__)

MAX_MISCLASSIFIED = 25     # samples in the misclassified grid
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def make_dashboards(cfg: dict[str, Any], logger: Any) -> list[pl.Callback]:
    """The dashboards callback for a run (none without a TensorBoard logger or with every dashboard off)."""
    from pytorch_lightning.loggers import TensorBoardLogger

    from cnnrun.train.trainer import writer_thread_pays

    plan = dashboard_plan(cfg["logger"])
    if not isinstance(logger, TensorBoardLogger) or not plan.any():
        return []
    return [Dashboards(plan, background=writer_thread_pays(cfg["trainer"]["accelerator"]))]


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


# -- the run's final numbers -------------------------------------------------------------------------------------
# The final numbers (metrics.json's ``metrics``) that no curve holds, and their TensorBoard tags: beside their kin in
# the val and train_eval groups, not in groups of single points that TensorBoard would sort ahead of the curves.
FINAL_ONLY_TAGS = {"best/val_acc": "val/best_acc", "gap": "train_eval/gap"}


def final_scalars(metrics: dict[str, float | None]) -> dict[str, float]:
    """The scalars to log once, at the last epoch, after testing: the final numbers of ``metrics`` that no curve
    holds, under :data:`FINAL_ONLY_TAGS`. Every other final number is the last point of a curve already logged
    (``test/acc``, ``val/loss``, ...), which TensorBoard's HPARAMS tab reads as its metric column: no second copy."""
    return {tag: float(metrics[key]) for key, tag in FINAL_ONLY_TAGS.items() if metrics.get(key) is not None}


# -- the model graph ---------------------------------------------------------------------------------------------
def layer_graph(net: nn.Module, example: torch.Tensor):
    """The graph that ``SummaryWriter.add_graph`` writes for ``net`` traced with ``example`` (a GraphDef and its
    step statistics), with the scopes that hold every node (the model and its layer list:
    ``CnnModel/Sequential[layers]/``) taken off the node names and each layer's scope named as the model's config
    and table name it (``Branches[2]`` -> ``inception[2]``). TensorBoard opens a graph collapsed to its top-level
    scopes, which are then the layers, each expandable."""
    from torch.utils.tensorboard._pytorch_graph import graph  # the tracer SummaryWriter.add_graph uses

    with _trace_unchecked():
        graph_def, step_stats = graph(net, example)
    io_names = {node.name for node in graph_def.node if node.op == "IO Node"}
    shared = shared_scope([node.name for node in graph_def.node if node.name not in io_names])
    container, layer_names = layer_scopes(net)
    heads = layer_names if shared == container else {}

    def renamed(name: str) -> str:  # inputs too: the tracer's references to parameters have no node of their own
        return _renamed_head(name.removeprefix(shared), heads) if name.startswith(shared) else name

    io_scopes = {name.split("/")[0] for name in io_names}
    clash = any(renamed(node.name).split("/")[0] in io_scopes for node in graph_def.node if node.name not in io_names)
    if not shared or clash:
        return graph_def, step_stats  # a layer's nodes would join the inputs' or outputs' scope
    for node in graph_def.node:
        node.name = node.name if node.name in io_names else renamed(node.name)
        node.input[:] = [renamed(name) for name in node.input]
    return graph_def, step_stats


@contextmanager
def _trace_unchecked():
    """``torch.jit.trace`` without its trace check while the graph is drawn. The check runs the model a second time
    and compares the outputs (half of the graph's cost: 43 -> 19 ms for LeNet-5, 511 -> 224 ms for Inception on the
    2-core CPU); a picture of the layers needs one trace, and ``graph`` gives no way to pass ``check_trace``."""
    trace = torch.jit.trace
    torch.jit.trace = functools.partial(trace, check_trace=False)
    try:
        yield
    finally:
        torch.jit.trace = trace


def shared_scope(names: list[str]) -> str:
    """The scope (``"a/b/"``) that holds every one of ``names`` (``"a/b/c/op"``), down to where they part."""
    shared: list[str] = []
    for level in zip(*(name.split("/")[:-1] for name in names)):
        if len(set(level)) != 1:
            break
        shared.append(level[0])
    return "".join(f"{scope}/" for scope in shared)


def layer_scopes(net: nn.Module) -> tuple[str, dict[str, str]]:
    """Where the tracer puts a built model's layers: the scope of its layer list (``CnnModel/Sequential[layers]/``)
    and, for each layer, its scope there (``Branches[2]``, the module's class and index) -> its type in the model's
    config with the index (``inception[2]``); ("", {}) for a model without layer records."""
    layers, records = getattr(net, "layers", None), [r for r in getattr(net, "records", None) or [] if r.depth == 0]
    if not isinstance(layers, nn.Sequential) or len(records) != len(layers):
        return "", {}
    names = {f"{type(layer).__name__}[{i}]": f"{rec.type}[{i}]" for i, (layer, rec) in enumerate(zip(layers, records))}
    return f"{type(net).__name__}/{type(layers).__name__}[layers]/", names


def _renamed_head(name: str, heads: dict[str, str]) -> str:
    head, sep, rest = name.partition("/")
    return heads.get(head, head) + sep + rest


# -- the callback ------------------------------------------------------------------------------------------------
class Dashboards(pl.Callback):
    """Writes the dashboards of ``plan`` to the trainer's TensorBoard logger (global rank 0 only); with
    ``background``, its pictures are encoded and written by a writer thread (:mod:`cnnrun.train.deferred_writer`)."""

    def __init__(self, plan: DashboardPlan, background: bool = False):
        self.plan = plan
        self.background = background
        self._deferred: DeferredWriter | None = None
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

    def _writer(self, trainer: pl.Trainer) -> DeferredWriter:
        writer = trainer.logger.experiment
        if self._deferred is None or self._deferred.writer is not writer:
            self.finish_writes()
            self._deferred = DeferredWriter(writer, self.background)
        return self._deferred

    def finish_writes(self) -> None:
        """Every picture handed to the writer thread written (the first failed write raised here)."""
        if self._deferred is not None:
            self._deferred.wait()

    def teardown(self, trainer, pl_module, stage):
        # the end of fit, validate or test, just before Lightning closes the loggers
        self.finish_writes()

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
        # called before every step: the cheap tests first (the Trainer's properties cost tens of microseconds)
        every = self.plan.histograms
        if not every:
            return
        batches = trainer.num_training_batches
        if math.isfinite(batches) and self._batch_idx != batches - 1:
            return  # the epoch's last step (with an endless loader: its first)
        epoch = trainer.current_epoch
        if not trainer.is_global_zero or not self._due(trainer, every, epoch) or self._grads_epoch == epoch:
            return
        self._grads_epoch = epoch
        with self._timed("histograms"):
            writer = self._writer(trainer)
            for name, param in self._net(pl_module).named_parameters():
                if param.grad is not None:
                    add_histogram(writer, f"gradients/{name}", param.grad, epoch + 1)

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        self._epoch_done = epoch
        due = [name for name in PERIODIC if self._due(trainer, getattr(self.plan, name), epoch)]
        self._write_periodic(trainer, pl_module, due, epoch)

    def on_train_end(self, trainer, pl_module):
        """A run stopped before its last epoch (early stopping, max_steps) still shows its final state."""
        if trainer.is_global_zero and self._epoch_done >= 0:
            late = [name for name in PERIODIC
                    if getattr(self.plan, name) and self._logged.get(name) != self._epoch_done]
            self._write_periodic(trainer, pl_module, late, self._epoch_done)

    def _write_periodic(self, trainer, pl_module, names: list[str], epoch: int) -> None:
        writer, step, net = self._writer(trainer), epoch + 1, self._net(pl_module)
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
        writer.add_image("feature_maps/input", sample_image(self._sample[0]), step)
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
                    self._writer(trainer)._get_file_writer().add_graph(layer_graph(net, example))
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
        try:  # what was handed over is written before the logger closes; the run's own error is the one to report
            self.finish_writes()
        except Exception as err:  # noqa: BLE001
            log.warning("dashboards: a picture was not written: %s: %s", type(err).__name__, err)

    def on_test_end(self, trainer, pl_module):
        if self._hook is None:
            return
        self._unhook()
        if not trainer.is_global_zero:
            self._test = {}
            return
        writer, step = self._writer(trainer), trainer.current_epoch  # the last epoch, as the test's scalars
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
