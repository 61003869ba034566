"""Fabricated sweep folders: the files a job leaves (Hydra's overrides.yaml, metrics.json, config.yaml), written by
hand so that the report is checked against values the test chose."""
import json

import yaml


def fake_job(root, num, method, seed, test_acc, *, status="completed", extra=(), error=None, metrics=True,
             config=None):
    """A fabricated job folder; ``method`` None: a job that chose no generalization method; ``config``: the
    resolved config its config.yaml holds."""
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    overrides = [*([f"generalization={method}"] if method else []), f"seed={seed}", *extra]
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if config is not None:
        (job / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics:
        record = {"status": status, "error": error, "seed": seed, "method": method, "overrides": overrides,
                  "metrics": {} if status != "completed" else
                  {"test/acc": test_acc, "test/loss": 1 - test_acc, "gap": 0.1, "val/acc": test_acc},
                  "history": [] if test_acc is None else [{"epoch": 0, "val/acc": test_acc - 0.1},
                                                             {"epoch": 1, "val/acc": test_acc}],
                  "params": 100, "duration_s": 1.0}
        (job / "metrics.json").write_text(json.dumps(record))


def resolved(seed, method, *, weight_decay=0.0, augment=None):
    """A job's config.yaml: what it trains, plus its seed, method node and data statistics (which vary per job)."""
    return {"seed": seed, "ckpt_path": None, "mode": "train",
            "data": {"name": "digits", "batch_size": 32, "augment": augment,
                     "stats": {"mean": [0.1 * seed], "std": [1.0 + seed]}},
            "optim": {"name": "sgd", "lr": 0.1, "weight_decay": weight_decay},
            "generalization": {method: {"description": f"{method}, as its file says"}}}


def methods_sweep(root, extra=("trainer.max_epochs=2",)):
    """Baseline and augment over seeds 1-3 (augment 1/15 better on average), and a dropout configuration whose two
    jobs did not complete: one failed with an error, one was killed before writing metrics.json."""
    for i, (method, seed, acc) in enumerate([("baseline", 1, 0.70), ("baseline", 2, 0.85), ("baseline", 3, 0.80),
                                             ("augment", 1, 0.80), ("augment", 2, 0.90), ("augment", 3, 0.85)]):
        fake_job(root, i, method, seed, acc, extra=list(extra))
    fake_job(root, 6, "dropout", 1, None, status="failed", error="ConfigError: model.dropout: nope", extra=list(extra))
    fake_job(root, 7, "dropout", 2, None, metrics=False, extra=list(extra))  # killed mid-run
