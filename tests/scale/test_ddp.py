"""Lightning DDP on the CPU (gloo): 2 processes, one run folder, one metrics.json, each rank on its own shard."""
import json

import pytest
import torch

from cnnrun.distributed import is_rank_zero, shard_indices
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


def test_ddp_on_two_cpu_processes(tmp_path):
    result = run_cli(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1",
                      "callbacks.progress_bar.refresh_rate=0"], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
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


def test_ddp_in_a_local_sweep_is_refused_with_the_key(tmp_path):
    result = run_cli(["-m", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "seed=1,2"],
                     cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "error: trainer.strategy: ddp starts its other processes by re-running the command" in result.stderr
