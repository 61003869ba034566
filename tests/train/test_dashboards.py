"""The dashboards callback: what it writes to TensorBoard, checked by reading the event files back and against
independent computations (the checkpoint's weights, sklearn's confusion matrix, the layers' own outputs). The
pictures' own rendering is tested in tests/test_figures.py."""
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnrun import ConfigError, compose, run
from cnnrun.config import to_plain
from cnnrun.figures import MIN_TILE_PX
from cnnrun.train import dashboards as D
from tests.conftest import QUIET
from tests.test_figures import block_centres, scaled, tile

EVERY_EPOCH = ["logger.dashboards.filters.every_n_epochs=1", "logger.dashboards.feature_maps.every_n_epochs=1",
               "logger.dashboards.histograms.every_n_epochs=1"]
STEPS = 12  # training batches per epoch (of 41)
TRAIN = [*QUIET, "trainer.max_epochs=2", f"trainer.limit_train_batches={STEPS}"]


def read_events(run_dir: Path) -> dict:
    """Every image, histogram, text, scalar ((step, value) pairs) and graph in the run's event files (all steps
    kept)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {"images": {}, "histograms": {}, "text": {}, "graph": None, "scalars": {}}
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path), size_guidance={"images": 0, "histograms": 0, "tensors": 0, "scalars": 0})
        acc.Reload()
        tags = acc.Tags()
        for tag in tags["images"]:
            out["images"].setdefault(tag, []).extend(acc.Images(tag))
        for tag in tags["histograms"]:
            out["histograms"].setdefault(tag, []).extend(acc.Histograms(tag))
        for tag in tags["tensors"]:
            if tag.endswith("/text_summary"):
                out["text"][tag.removesuffix("/text_summary")] = [
                    e.tensor_proto.string_val[0].decode() for e in acc.Tensors(tag)]
        if tags["graph"]:
            out["graph"] = acc.Graph()
        for tag in tags["scalars"]:
            out["scalars"].setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def png(event) -> np.ndarray:
    """An image event's pixels, (H, W, 3) uint8."""
    from PIL import Image

    with Image.open(io.BytesIO(event.encoded_image_string)) as image:
        return np.array(image.convert("RGB"))


@pytest.fixture(scope="module")
def all_on(tmp_path_factory):
    """A 2-epoch digits run with every dashboard on, the periodic ones every epoch."""
    out = tmp_path_factory.mktemp("all_on")
    metrics = run(compose([*TRAIN, *EVERY_EPOCH]), output_dir=out)
    return out, metrics, read_events(out)


def trained_model(run_dir: Path, name: str):
    from cnnrun.train.module import Classifier

    ckpt = torch.load(run_dir / "checkpoints" / name, weights_only=True)
    module = Classifier(ckpt["hyper_parameters"]["config"])
    module.load_state_dict(ckpt["state_dict"])
    return module.model.eval(), ckpt["hyper_parameters"]["config"]


def data_module(config):
    """The run's data module, built as cnnrun.train.fit builds it."""
    from cnnrun.data import load_data
    from cnnrun.train.datamodule import InMemoryDataModule

    return InMemoryDataModule(load_data(config["data"]), config["data"]["batch_size"], config["seed"],
                              data=config["data"])


def test_every_dashboard_is_written(all_on):
    out, _, ev = all_on
    net, _ = trained_model(out, "last.ckpt")
    params = [name for name, _ in net.named_parameters()]
    for tag in ("filters/first_layer", "feature_maps/input", "feature_maps/shallow", "feature_maps/deep"):
        assert [e.step for e in ev["images"][tag]] == [1, 2], tag  # every epoch of two, counted as the scalars
    assert "feature_maps/middle" not in ev["images"]  # LeNet-5 has two convolution layers: shallow and deep
    for tag in ("test/confusion_matrix", "test/misclassified"):
        assert [e.step for e in ev["images"][tag]] == [step for step, _ in ev["scalars"]["test/acc"]], tag
    assert {f"weights/{p}" for p in params} | {f"gradients/{p}" for p in params} == set(ev["histograms"])
    ops = {node.op for node in ev["graph"].node}
    assert {"aten::_convolution", "aten::avg_pool2d", "aten::linear"} <= ops
    layers = ev["text"]["feature_maps/layers"][0]
    assert "| shallow | model.layers[0] (conv) -> (6, 28, 28) |" in layers
    assert "| deep | model.layers[3] (conv) -> (16, 10, 10) |" in layers


def test_scalars_are_the_epoch_curves_and_the_final_numbers_beside_them(all_on):
    """No chart for `epoch` and no single-point copies of the final metrics (hp/*): the curves against the epoch
    from 1, the test and train_eval values at the last epoch, and beside them the two final numbers that no curve
    holds: val/best_acc (the selected epoch's val/acc: here the highest) and train_eval/gap (train_eval/acc minus
    it)."""
    _, _, ev = all_on
    scalars = ev["scalars"]
    assert set(scalars) == {"train/loss", "train/acc", "train/lr", "val/loss", "val/acc", "test/loss", "test/acc",
                            "train_eval/loss", "train_eval/acc", "val/best_acc", "train_eval/gap"}
    for tag, points in scalars.items():
        curve = tag.split("/")[0] in ("train", "val") and tag != "val/best_acc"
        assert [step for step, _ in points] == ([1, 2] if curve else [2]), tag
    best = max(value for _, value in scalars["val/acc"])
    assert scalars["val/best_acc"][0][1] == pytest.approx(best, abs=1e-6)
    assert scalars["train_eval/gap"][0][1] == pytest.approx(scalars["train_eval/acc"][0][1] - best, abs=1e-6)


def test_the_hparams_tab_takes_its_metric_columns_from_the_curves(all_on):
    """TensorBoard's HPARAMS tab (its own backend) has a metric column per scalar tag, and the run's value in each is
    the last point of that tag."""
    from tests.test_names import tensorboard_hparams_tab

    out, _, ev = all_on
    experiment, groups = tensorboard_hparams_tab(out)
    assert {m.name.tag for m in experiment.metric_infos} == set(ev["scalars"])
    (group,) = groups.session_groups
    shown = {m.name.tag: m.value for m in group.metric_values}
    assert shown == pytest.approx({tag: points[-1][1] for tag, points in ev["scalars"].items()}, abs=1e-6)


def test_the_graph_opens_on_the_models_layers(all_on):
    """The graph's top-level scopes, what TensorBoard's Graphs tab shows first, are the model's layers named as its
    config and table name them (type[index]), beside the input and the output; each convolution sits in its layer,
    and every operation's inputs are nodes of the graph."""
    out, _, ev = all_on
    _, config = trained_model(out, "last.ckpt")
    types = [next(iter(layer)) if isinstance(layer, dict) else layer for layer in config["model"]["layers"]]
    nodes = ev["graph"].node
    assert {node.name.split("/")[0] for node in nodes} == {"input", "output"} | {
        f"{kind}[{i}]" for i, kind in enumerate(types)}
    convolutions = [node.name.split("/")[0] for node in nodes if node.op == "aten::_convolution"]
    assert convolutions == [f"conv[{i}]" for i, kind in enumerate(types) if kind == "conv"]
    names = {node.name for node in nodes}
    assert all(name in names for node in nodes if node.op.startswith("aten::") for name in node.input)  # data flow


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")  # the tracer TensorBoard's graphs use
def test_a_block_is_one_layer_of_the_graph_with_its_branches_inside():
    """An Inception block is one top-level scope with its four branches inside; the graph is the tracer's own
    (torch.utils.tensorboard's, as SummaryWriter.add_graph writes it) with other names: the same operations, each
    fed by the same operations."""
    from torch.utils.tensorboard._pytorch_graph import graph as traced
    from cnnrun import build_model

    spec = {"name": "block", "layers": [
        {"conv": {"out_channels": 8, "kernel_size": 3}}, "relu",
        {"inception": {"ch1x1": 4, "ch3x3red": 4, "ch3x3": 4, "ch5x5red": 2, "ch5x5": 2, "pool_proj": 2}},
        "global_avgpool", {"linear": {"out_features": 3}}]}
    net = build_model(spec, (3, 12, 12), 3).eval()
    with torch.no_grad():
        graph, _ = D.layer_graph(net, torch.randn(1, 3, 12, 12))
    names = [node.name for node in graph.node]
    assert {name.split("/")[0] for name in names} == {"input", "output", "conv[0]", "relu[1]", "inception[2]",
                                                      "global_avgpool[3]", "linear[4]"}
    inside = {name.split("/")[1] for name in names if name.startswith("inception[2]/") and name.count("/") > 1}
    assert inside == {f"Sequential[branch{k}]" for k in range(1, 5)}
    with torch.no_grad():
        original, _ = traced(net, torch.randn(1, 3, 12, 12))

    def feeds(g):
        ops = {node.name: node.op for node in g.node}
        return [(node.op, [ops.get(name) for name in node.input]) for node in g.node]

    assert feeds(graph) == feeds(original)
    assert not [name for node in graph.node for name in [node.name, *node.input] if name.startswith("CnnModel")]


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_the_graph_runs_the_model_once_and_leaves_the_tracer_as_it_was():
    """One trace, without the tracer's check (which runs the model again to compare): the model's forward runs once.
    torch.jit.trace is torch's own again afterwards, also when tracing fails."""
    from cnnrun import build_model

    net = build_model({"name": "n", "layers": [{"conv": {"out_channels": 4, "kernel_size": 3}}, "relu",
                                               "global_avgpool", {"linear": {"out_features": 3}}]}, (1, 8, 8), 3)
    calls = []
    net.register_forward_pre_hook(lambda mod, inp: calls.append(1))
    tracer = torch.jit.trace
    with torch.no_grad():
        D.layer_graph(net.eval(), torch.randn(1, 1, 8, 8))
    assert len(calls) == 1
    assert torch.jit.trace is tracer
    with pytest.raises(Exception), torch.no_grad():
        D.layer_graph(net, torch.randn(1, 2, 8, 8))  # the wrong number of channels: the trace fails
    assert torch.jit.trace is tracer


def test_histograms_show_the_weights_at_epoch_end_and_the_last_steps_gradients(all_on):
    out, _, ev = all_on
    net, _ = trained_model(out, "last.ckpt")
    weight_steps = [e.step for e in ev["histograms"]["weights/layers.0.weight"]]
    grad_steps = [e.step for e in ev["histograms"]["gradients/layers.0.weight"]]
    assert weight_steps == grad_steps == [1, 2]  # against the epoch, from 1, as the scalars
    for name, param in net.named_parameters():  # the last epoch's weights are the last checkpoint's
        h = ev["histograms"][f"weights/{name}"][-1].histogram_value
        assert h.num == param.numel()
        param = param.detach().double()
        assert h.min == pytest.approx(float(param.min()), abs=1e-6)
        assert h.max == pytest.approx(float(param.max()), abs=1e-6)
        assert h.sum == pytest.approx(float(param.sum()), abs=1e-4)
        g = ev["histograms"][f"gradients/{name}"][-1].histogram_value
        assert g.num == param.numel() and g.max > g.min  # a real gradient, not zeros


def test_filter_grid_shows_the_first_layers_weights(all_on):
    out, _, ev = all_on
    net, _ = trained_model(out, "last.ckpt")
    weight = net.layers[0].weight.detach()  # (6, 1, 5, 5)
    image = png(ev["images"]["filters/first_layer"][-1])
    factor = math.ceil(MIN_TILE_PX / 5)
    size, nrow = 5 * factor, math.ceil(math.sqrt(6))
    assert image.shape[:2] == (2 * (size + 2) + 2, nrow * (size + 2) + 2)
    for i in range(6):
        shown = block_centres(tile(image, i, nrow, size), factor)
        assert np.abs(shown - scaled(weight[i, 0])).max() <= 1.01, i


def test_feature_maps_are_the_deep_layers_output_on_a_fixed_validation_sample(all_on):
    out, _, ev = all_on
    net, config = trained_model(out, "last.ckpt")
    x, _ = next(iter(data_module(config).val_dataloader()))  # the validation split as the model sees it
    seen = {}
    net.layers[3].register_forward_hook(lambda m, i, o: seen.setdefault("deep", o))
    with torch.no_grad():
        net(x[:1])
    maps = seen["deep"][0]  # (16, 10, 10)
    image = png(ev["images"]["feature_maps/deep"][-1])
    factor = math.ceil(MIN_TILE_PX / 10)
    for channel in (0, 7, 15):
        shown = block_centres(tile(image, channel, 4, 10 * factor), factor)
        assert np.abs(shown - scaled(maps[channel])).max() <= 1.01, channel
    first_input = png(ev["images"]["feature_maps/input"][0])
    last_input = png(ev["images"]["feature_maps/input"][-1])
    assert np.array_equal(first_input, last_input)  # the same sample every time


def test_confusion_matrix_matches_sklearn_on_the_best_checkpoints_predictions(all_on):
    from sklearn.metrics import confusion_matrix

    out, metrics, ev = all_on
    net, config = trained_model(out, "best.ckpt")
    with torch.no_grad():
        pairs = [(net(x).argmax(1), y) for x, y in data_module(config).test_dataloader()]
    pred, true = torch.cat([p for p, _ in pairs]), torch.cat([y for _, y in pairs])
    expected = confusion_matrix(true.numpy(), pred.numpy(), labels=list(range(10)))
    table = ev["text"]["test/confusion_matrix_counts"][0].splitlines()[2:]
    logged = np.array([[int(v) for v in row.strip("| ").split(" | ")[1:]] for row in table])
    assert np.array_equal(logged, expected)
    assert logged.trace() / logged.sum() == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert len(ev["text"]["test/confusion_matrix_counts"]) == 1  # the test split only, once


def test_mode_test_logs_the_graph_and_the_same_confusion_matrix(all_on, tmp_path):
    out, metrics, ev = all_on
    tested = run(compose(["mode=test", f"ckpt_path={out}/checkpoints/best.ckpt", *TRAIN]), output_dir=tmp_path)
    assert tested["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    again = read_events(tmp_path)
    assert again["graph"] is not None and not again["histograms"]
    assert again["text"]["test/confusion_matrix_counts"] == ev["text"]["test/confusion_matrix_counts"]
    assert set(again["images"]) == {"test/confusion_matrix", "test/misclassified"}


@pytest.fixture(scope="module")
def half_off(tmp_path_factory):
    """The all-on run's training with feature maps, the confusion matrix and the graph switched off."""
    out = tmp_path_factory.mktemp("half_off")
    metrics = run(compose([*TRAIN, *EVERY_EPOCH, "logger.dashboards.feature_maps=false",
                           "logger.dashboards.confusion_matrix=false", "logger.dashboards.graph=false"]),
                  output_dir=out)
    return out, metrics, read_events(out)


def test_switches_turn_their_dashboard_off_and_training_is_unchanged(all_on, half_off):
    _, on_metrics, _ = all_on
    _, metrics, ev = half_off
    assert metrics == on_metrics  # dashboards draw no random numbers and change no state
    assert set(ev["images"]) == {"filters/first_layer", "test/misclassified"}
    assert ev["graph"] is None
    assert "test/confusion_matrix_counts" not in ev["text"] and "feature_maps/layers" not in ev["text"]
    assert ev["histograms"]  # still on


def test_the_other_switches_a_failing_graph_and_a_run_cut_short(tmp_path, monkeypatch):
    """Filters, histograms and misclassified off; a graph the tracer cannot make is a warning, not a crash; a run
    stopped by max_steps still shows its final feature maps (period 5, never due)."""
    def cannot_trace(*args, **kwargs):
        raise RuntimeError("the tracer cannot follow this model")

    monkeypatch.setattr(D, "layer_graph", cannot_trace)
    with pytest.warns(RuntimeWarning, match="model graph was not logged: RuntimeError: the tracer cannot follow"):
        run(compose([*TRAIN, "trainer.max_epochs=5", "trainer.max_steps=15", "logger.dashboards.filters=false",
                     "logger.dashboards.histograms=0", "logger.dashboards.misclassified=false"]), output_dir=tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "completed"
    ev = read_events(tmp_path)
    assert set(ev["images"]) == {"feature_maps/input", "feature_maps/shallow", "feature_maps/deep",
                                 "test/confusion_matrix"}
    assert [e.step for e in ev["images"]["feature_maps/deep"]] == [2]  # the 2nd epoch, stopped in it at step 15
    assert not ev["histograms"] and ev["graph"] is None


def test_no_callback_without_tensorboard_or_with_everything_off():
    from pytorch_lightning.loggers import TensorBoardLogger

    on = to_plain(compose([]))
    assert D.make_dashboards(on, None) == []  # logger=none
    off = to_plain(compose(["logger.dashboards=false"]))
    assert D.make_dashboards(off, TensorBoardLogger("unused")) == []
    callbacks = D.make_dashboards(on, TensorBoardLogger("unused"))
    assert len(callbacks) == 1 and callbacks[0].plan == D.DashboardPlan(5, 5, 5, True, True, True)
    assert to_plain(compose(["logger=none"]))["logger"]["dashboards"] is False


@pytest.mark.parametrize("value,plan", [
    (True, D.DashboardPlan(5, 5, 5, True, True, True)),
    ({"filters": 2, "feature_maps": True, "histograms": {"every_n_epochs": 0}, "graph": None},
     D.DashboardPlan(filters=2, feature_maps=5)),
    ({"histograms": {}}, D.DashboardPlan(histograms=5)),
])
def test_plan_forms(value, plan):
    assert D.dashboard_plan({"dashboards": value}) == plan


@pytest.mark.parametrize("dashboards,key,message", [
    ({"filterz": True}, "logger.dashboards.filterz", "did you mean 'filters'?"),
    ({"histograms": {"every_n_epochs": -1}}, "logger.dashboards.histograms.every_n_epochs", "got -1"),
    ({"histograms": {"every_n_epoch": 2}}, "logger.dashboards.histograms.every_n_epoch", "every_n_epochs"),
    ({"feature_maps": 1.5}, "logger.dashboards.feature_maps", "number of epochs >= 0"),
    ({"graph": 1}, "logger.dashboards.graph", "must be true or false, got 1"),
    (3, "logger.dashboards", "must be a mapping"),
])
def test_bad_settings_name_their_key(dashboards, key, message):
    with pytest.raises(ConfigError) as err:
        D.dashboard_plan({"dashboards": dashboards})
    assert err.value.path == key and message in err.value.message


def test_bad_settings_stop_the_run_before_data_or_training(tmp_path):
    with pytest.raises(ConfigError, match="logger.dashboards.histograms.every_n_epochs"):
        run(compose([*TRAIN, "logger.dashboards.histograms.every_n_epochs=-2"]), output_dir=tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "failed" and "data_sizes" not in record and "fit_s" not in record


def test_conv_stages_pick_shallow_middle_and_deep():
    from cnnrun import build_model

    spec = {"name": "five", "layers": [{"conv": {"out_channels": 4, "kernel_size": 3}}, "relu"] * 5
            + ["flatten", {"linear": {"out_features": 3}}]}
    net = build_model(spec, (1, 16, 16), 3)
    stages = D.conv_stages(net)
    assert [(view, desc.split(" ->")[0]) for view, desc, _ in stages] == [
        ("shallow", "model.layers[0] (conv)"), ("middle", "model.layers[4] (conv)"),
        ("deep", "model.layers[8] (conv)")]
    assert all(module is net.layers[int(desc.split("[")[1].split("]")[0])] for _, desc, module in stages)
