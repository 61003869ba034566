"""Lightning DDP on the CPU (gloo): 2 processes, one run folder, one metrics.json, each rank on its own shard, the
test's confusion matrix over both shards; gradient accumulation under DDP against one process on the global batches."""
import copy
import json
import math
import os

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.strategies import DDPStrategy
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from cnnrun import build_model, compose
from cnnrun.config import to_plain
from cnnrun.data import load_data
from cnnrun.distributed import is_rank_zero, shard_indices
from cnnrun.train.datamodule import DataModule
from cnnrun.train.module import Classifier
from tests.conftest import run_cli


def test_shards_are_disjoint_and_cover_the_data():
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    train = [shard_indices(order, r, 3, pad=True) for r in range(3)]
    assert [len(s) for s in train] == [4, 4, 4]  # padded to equal length by wrapping around
    assert set(torch.cat(train).tolist()) == set(range(11)) and len(torch.cat(train)) == 12
    evals = [shard_indices(order, r, 3, pad=False) for r in range(3)]
    assert sorted(torch.cat(evals).tolist()) == list(range(11))  # every sample exactly once
    assert torch.equal(shard_indices(order, 0, 1, pad=True), order)


def test_rank_zero_from_the_environment(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    assert is_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not is_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "1")
    assert not is_rank_zero()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One default run on two CPU processes (one epoch), read by the tests below: (the CLI's result, its folder's
    parent)."""
    cwd = tmp_path_factory.mktemp("ddp")
    result = run_cli(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1",
                      "callbacks.progress_bar.refresh_rate=0"], cwd=cwd, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, cwd


def test_ddp_on_two_cpu_processes(ddp_run):
    result, tmp_path = ddp_run
    runs = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 1  # both processes wrote into one run folder
    assert len(list(tmp_path.rglob("metrics.json"))) == 1
    record = json.loads((runs[0] / "metrics.json").read_text())
    assert record["status"] == "completed" and 0 < record["metrics"]["test/acc"] <= 1
    n = record["data_sizes"]["train"]
    shards = record["distributed"]
    assert shards["world_size"] == 2 and shards["train_samples"] == n
    assert shards["train_shard_sizes"] == [-(-n // 2)] * 2
    assert shards["distinct_samples_seen"] == n  # together the ranks see every sample ...
    assert shards["samples_in_two_shards"] == 2 * -(-n // 2) - n  # ... and share only the padding
    assert (runs[0] / "checkpoints" / "best.ckpt").exists()
    writers = {p.name.split(".")[-2] for p in (runs[0] / "tensorboard").glob("events.out.tfevents.*")}
    assert len(writers) == 1  # one process (rank 0) wrote TensorBoard events
    assert result.stdout.count("run folder:") == 1


def test_ddp_confusion_matrix_covers_the_whole_test_split(ddp_run):
    """Two processes, each testing its shard: the logged matrix sums both (rank 0 alone writes the dashboards)."""
    import numpy as np

    from tests.train.test_dashboards import read_events

    (run_dir,) = (ddp_run[1] / "outputs" / "runs").iterdir()
    record = json.loads((run_dir / "metrics.json").read_text())
    ev = read_events(run_dir)
    (table,) = ev["text"]["test/confusion_matrix_counts"]
    matrix = np.array([[int(v) for v in row.strip("| ").split(" | ")[1:]] for row in table.splitlines()[2:]])
    assert matrix.sum() == record["data_sizes"]["test"]
    assert matrix.trace() / matrix.sum() == pytest.approx(record["metrics"]["test/acc"], abs=1e-6)
    assert len(ev["images"]["test/confusion_matrix"]) == 1 and len(ev["images"]["filters/first_layer"]) == 1


def test_ddp_in_a_local_sweep_is_refused_with_the_key(tmp_path):
    result = run_cli(["-m", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "seed=1,2"],
                     cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "error: trainer.strategy: ddp starts its other processes by re-running the command" in result.stderr


def counting_allreduce(reduced: list, bucket):
    """A DDP communication hook: notes the bucket, then averages it over the processes as DDP does by default."""
    reduced.append(bucket.index())
    return default_hooks.allreduce_hook(None, bucket)


class RankRecorder(pl.Callback):
    """In each DDP process: the training batches, the gradient all-reduces and the final weights, saved to
    ``folder/rank<r>.pt`` (the processes are forked: nothing else comes back)."""

    def __init__(self, folder):
        self.folder = folder
        self.batches: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        self.reduced: list[int] = []

    def on_fit_start(self, trainer, pl_module):
        # Lightning registers communication hooks on CUDA only; on the CPU the test registers its own
        trainer.strategy.model.register_comm_hook(self.reduced, counting_allreduce)

    def on_train_epoch_start(self, trainer, pl_module):
        self.batches.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches[-1].append((batch[0].clone(), batch[1].clone()))

    def on_train_end(self, trainer, pl_module):
        torch.save({"batches": self.batches, "reduced": self.reduced, "weights": pl_module.model.state_dict()},
                   self.folder / f"rank{trainer.global_rank}.pt")


@pytest.fixture
def one_thread_and_environment_restored():
    """Forked processes: OpenMP's thread pool does not survive a fork (a child with more than one thread hangs in
    its first parallel operation), and Lightning's launcher sets MASTER_PORT in this process's environment."""
    threads, environment = torch.get_num_threads(), dict(os.environ)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    os.environ.clear()
    os.environ.update(environment)


def test_ddp_accumulation_matches_one_process_on_the_global_batches(tmp_path, one_thread_and_environment_restored):
    """2 gloo processes with trainer.accumulate_grad_batches=4 end with the weights of a plain loop in one process
    over the union of both processes' batches, and reduce the gradients once per optimizer step (DDP's no_sync
    inside each accumulation window), not once per batch."""
    accumulate = 4
    cfg = to_plain(compose(["data.train_fraction=0.2", "data.batch_size=16", "trainer.max_epochs=2", "sched=none",
                            f"trainer.accumulate_grad_batches={accumulate}"]))
    torch.manual_seed(0)
    model = build_model(cfg["model"], cfg["data"]["input_shape"], cfg["data"]["num_classes"])  # LeNet-5: no BN
    initial = copy.deepcopy(model.state_dict())
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=[RankRecorder(tmp_path)],
                         accelerator="cpu", devices=2, strategy=DDPStrategy(start_method="fork"))
    trainer.fit(Classifier(cfg, model), datamodule=DataModule(load_data(cfg["data"]), 16, cfg["seed"],
                                                              data=cfg["data"]))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    reference = build_model(cfg["model"], cfg["data"]["input_shape"], cfg["data"]["num_classes"])
    reference.load_state_dict(initial)
    o = cfg["optim"]
    opt = torch.optim.SGD(reference.parameters(), lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"],
                          weight_decay=o["weight_decay"])
    steps = 0
    for epoch in zip(ranks[0]["batches"], ranks[1]["batches"]):
        for i, ((x0, y0), (x1, y1)) in enumerate(zip(*epoch)):
            assert len(y0) == len(y1)  # equal shares: the mean over the union is the mean of the ranks' means
            if i % accumulate == 0:
                opt.zero_grad()
            logits = reference(torch.cat([x0, x1]))
            loss = F.cross_entropy(logits, torch.cat([y0, y1]), label_smoothing=cfg["loss"]["label_smoothing"])
            (loss / accumulate).backward()
            if (i + 1) % accumulate == 0 or i + 1 == len(epoch[0]):
                opt.step()
                steps += 1

    batches = [len(epoch) for epoch in ranks[0]["batches"]]
    assert batches[0] % accumulate != 0  # the epoch's last window is short
    assert steps == sum(math.ceil(n / accumulate) for n in batches) < sum(batches)
    for rank in ranks:
        for name, value in reference.state_dict().items():
            torch.testing.assert_close(rank["weights"][name], value, rtol=1e-5, atol=1e-6,
                                       msg=lambda m: f"{name}: {m}")
        # DDP reduces every bucket (bucket 0 first) on each backward it syncs: once per optimizer step here
        assert rank["reduced"].count(0) == steps
