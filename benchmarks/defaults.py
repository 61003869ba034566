"""Choose the default digits recipe and the default epochs on validation data only.

Runs each candidate over seeds 0-4 with ``cnnrun.run(compose([...]))`` in this one process, one torch thread, no
logger, and reports per candidate the validation evidence read from each run's ``metrics.json`` (its per-epoch
``history``): the best and the final ``val/acc``, the final-epoch validation errors pooled over the seeds (5 x 144
predictions on the same 144 images: steps of 1/720 where one seed's ``val/acc`` moves by 1/144 and saturates at 1),
and the final ``val/loss``.

Stages, each on top of the previous stage's choice:
  recipe  augmentation {off, recipe} x label smoothing {0, 0.1}, weight decay 5e-4, 30 epochs;
  epochs  the chosen recipe for 10, 20, 30, 40 epochs (the cosine schedule spans them).
SGD, lr 0.1, cosine schedule throughout, as in the default config.

The choice (``choose``) sees validation numbers only: the one-standard-error rule (Hastie, Tibshirani & Friedman,
Elements of Statistical Learning, 7.10): among the candidates whose every measure is within one standard error of
that measure's best candidate (paired over seeds), take the simplest, in the stage's declared order (fewer methods,
fewer epochs). The recipe stage measures the validation error only: its candidates train different objectives, and
label smoothing alone caps the confidence of a correct answer near 0.91 (about 0.09 nats of validation loss), so
cross-entropy does not compare them. The epochs stage trains one objective and measures both the error and the loss.
Test accuracy is read after the choice and printed in its own column, labelled as not used.

    python benchmarks/defaults.py [--seeds 0 1 2 3 4] [--stages recipe epochs] [--quick] [--out DIR] [--json FILE]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The config every candidate starts from, spelt out so that a later change of the defaults cannot change what this
# benchmark compares; every run is checked to have resolved these settings and its candidate's (check_effective).
GROUPS = ["model=lenet5", "data=digits", "optim=sgd", "sched=cosine", "loss=cross_entropy", "logger=none",
          "callbacks.progress_bar.refresh_rate=0", "trainer.threads=1"]
FIXED = (("optim.lr", 0.1), ("optim.weight_decay", 5e-4), ("sched.warmup_epochs", 0), ("sched.min_lr_ratio", 0.0))
RECIPE = "${data.augment_recipe}"  # the data set's recommended augmentation, resolved by the config


@dataclass(frozen=True)
class Candidate:
    """One configuration of a stage: a label and the settings (dotted key -> value) it adds to ``FIXED``."""

    label: str
    settings: tuple[tuple[str, Any], ...]

    def overrides(self) -> list[str]:
        return [f"{key}={'null' if value is None else value}" for key, value in (*FIXED, *self.settings)]


@dataclass(frozen=True)
class Stage:
    """Candidates in order of simplicity (the first is the simplest) and the validation measures that judge them."""

    name: str
    candidates: tuple[Candidate, ...]
    measures: tuple[str, ...]


def recipe_stage(epochs: int) -> Stage:
    """Augmentation {off, recipe} x label smoothing {0, 0.1}, fewest methods first."""
    grid = [("no augmentation, no smoothing", None, 0.0), ("label smoothing 0.1", None, 0.1),
            ("augmentation", RECIPE, 0.0), ("augmentation + label smoothing 0.1", RECIPE, 0.1)]
    return Stage("recipe", tuple(
        Candidate(label, (("data.augment", augment), ("loss.label_smoothing", smoothing),
                          ("trainer.max_epochs", epochs)))
        for label, augment, smoothing in grid), measures=("val_error",))


def epochs_stage(chosen: Candidate, epochs: list[int]) -> Stage:
    """The chosen recipe trained for each number of epochs, fewest first."""
    recipe = tuple((key, value) for key, value in chosen.settings if key != "trainer.max_epochs")
    return Stage("epochs", tuple(Candidate(f"{chosen.label}, {n} epoch{'s' if n != 1 else ''}",
                                           (*recipe, ("trainer.max_epochs", n))) for n in epochs),
                 measures=("val_error", "val_loss"))


# -- running ------------------------------------------------------------------------------------------------------
def lookup(config: dict[str, Any], dotted: str) -> Any:
    """``config["a"]["b"]`` for ``"a.b"``."""
    for part in dotted.split("."):
        config = config[part]
    return config


def check_effective(config: dict[str, Any], candidate: Candidate) -> None:
    """Stop if the run's resolved config lost one of the fixed or the candidate's settings (e.g. a generalization
    method or a changed default overriding it): the table would then compare something else than it says."""
    for key, value in (*FIXED, *candidate.settings):
        expected = lookup(config, value[2:-1]) if isinstance(value, str) and value.startswith("${") else value
        got = lookup(config, key)
        if got != expected and not (isinstance(got, (int, float)) and isinstance(expected, (int, float))
                                    and math.isclose(got, expected)):
            sys.exit(f"{candidate.label}: the run resolved {key}={got!r}, expected {expected!r}")


def run_one(candidate: Candidate, seed: int, extra: list[str], out: Path) -> dict[str, Any]:
    """Train one seed of a candidate; return its validation evidence and, apart, its test accuracy."""
    import yaml

    from cnnrun import compose, run

    run_dir = out / f"{re.sub('[^a-z0-9]+', '_', candidate.label.lower())}_seed{seed}"
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            run(compose([*GROUPS, *extra, *candidate.overrides(), f"seed={seed}"]), output_dir=run_dir)
    except BaseException:
        print(captured.getvalue(), file=sys.stderr)
        raise
    check_effective(yaml.safe_load((run_dir / "config.yaml").read_text()), candidate)
    record = json.loads((run_dir / "metrics.json").read_text())
    history = [h for h in record["history"] if "val/acc" in h]
    final = history[-1]
    val_size = record["data_sizes"]["val"]
    return {"seed": seed, "epochs": len(history), "val_size": val_size,
            "best_val_acc": max(h["val/acc"] for h in history), "final_val_acc": final["val/acc"],
            "val_errors": round((1 - final["val/acc"]) * val_size), "val_loss": final["val/loss"],
            "test_acc": record["metrics"].get("test/acc"), "duration_s": record["duration_s"]}


# -- choosing -----------------------------------------------------------------------------------------------------
def measure(result: dict[str, Any], name: str) -> float:
    """A validation measure of one seed's run, lower is better."""
    return {"val_error": result["val_errors"] / result["val_size"], "val_loss": result["val_loss"]}[name]


def within_one_se(candidate: list[dict[str, Any]], best: list[dict[str, Any]], name: str) -> bool:
    """Whether the candidate's mean excess over the best candidate, paired by seed, is at most its standard error."""
    excess = [measure(c, name) - measure(b, name) for c, b in zip(candidate, best)]
    se = statistics.stdev(excess) / math.sqrt(len(excess)) if len(excess) > 1 else 0.0
    return statistics.fmean(excess) <= se + 1e-12


def choose(stage: Stage, validation: dict[Candidate, list[dict[str, Any]]]) -> Candidate:
    """The one-standard-error rule on validation results only (no test numbers are passed in)."""
    def mean(c: Candidate, name: str) -> float:
        return statistics.fmean(measure(r, name) for r in validation[c])

    best = {name: min(stage.candidates, key=lambda c: mean(c, name)) for name in stage.measures}
    for candidate in stage.candidates:  # simplest first
        if all(within_one_se(validation[candidate], validation[best[name]], name) for name in stage.measures):
            return candidate
    return best[stage.measures[0]]  # no candidate is close to the best of every measure: the first measure decides


# -- reporting ----------------------------------------------------------------------------------------------------
def mean_std(values: list[float], digits: int = 4) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {std:.{digits}f}"


def table(stage: Stage, validation: dict[Candidate, list[dict[str, Any]]], chosen: Candidate,
          test_acc: dict[Candidate, list[float]]) -> str:
    """The stage's Markdown table: validation columns, the choice, then test accuracy (not used)."""
    lines = ["| candidate | best val/acc | final val/acc | final val errors, pooled | final val/loss | chosen | "
             "test/acc (not used for the choice) |", "|---|---|---|---:|---|:-:|---|"]
    for c in stage.candidates:
        runs = validation[c]
        errors, predictions = sum(r["val_errors"] for r in runs), sum(r["val_size"] for r in runs)
        lines.append(f"| {c.label} | {mean_std([r['best_val_acc'] for r in runs])} | "
                     f"{mean_std([r['final_val_acc'] for r in runs])} | {errors} / {predictions} | "
                     f"{mean_std([r['val_loss'] for r in runs])} | {'**yes**' if c == chosen else ''} | "
                     f"{mean_std(test_acc[c])} |")
    return "\n".join(lines)


def evaluate(stage: Stage, seeds: list[int], extra: list[str], out: Path,
             results: dict[tuple, list[dict[str, Any]]], started: float) -> Candidate:
    """Run the stage's candidates not yet in ``results`` (keyed by settings: the epochs stage reuses the recipe
    stage's runs of its recipe), choose on validation, print the table; return the choice."""
    for candidate in stage.candidates:
        if candidate.settings in results:
            continue
        runs = results[candidate.settings] = []
        for seed in seeds:
            runs.append(run_one(candidate, seed, extra, out))
            print(f"[{time.time() - started:6.0f} s] {candidate.label}, seed {seed}: final val/acc "
                  f"{runs[-1]['final_val_acc']:.4f}, val/loss {runs[-1]['val_loss']:.4f}", file=sys.stderr, flush=True)
    validation = {c: [{k: v for k, v in r.items() if k != "test_acc"} for r in results[c.settings]]
                  for c in stage.candidates}
    chosen = choose(stage, validation)
    test_acc = {c: [r["test_acc"] for r in results[c.settings]] for c in stage.candidates}  # read after the choice
    print(f"\n### Stage {stage.name} (seeds {', '.join(map(str, seeds))}; judged on {' and '.join(stage.measures)}, "
          f"one-standard-error rule)\n\n{table(stage, validation, chosen, test_acc)}\n\nchosen: {chosen.label}\n",
          flush=True)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--stages", nargs="+", choices=["recipe", "epochs"], default=["recipe", "epochs"])
    parser.add_argument("--epochs", type=int, nargs="+", default=[10, 20, 30, 40],
                        help="the epochs stage's candidates; the recipe stage trains for 30")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: seeds 0 1, a quarter of the training split, epochs 1-4 (recipe at 3)")
    parser.add_argument("--out", type=Path, help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write every run's numbers here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # one thread: steadier on a shared machine, and the same trajectories every time
    seeds, epochs, recipe_epochs, extra = args.seeds, args.epochs, 30, []
    if args.quick:
        seeds, epochs, recipe_epochs, extra = seeds[:2], [1, 2, 3, 4], 3, ["data.train_fraction=0.25"]

    started = time.time()
    results: dict[tuple, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        chosen = recipe_stage(recipe_epochs).candidates[-1]  # today's default recipe, if its stage is skipped
        if "recipe" in args.stages:
            chosen = evaluate(recipe_stage(recipe_epochs), seeds, extra, out, results, started)
        if "epochs" in args.stages:
            evaluate(epochs_stage(chosen, epochs), seeds, extra, out, results, started)
    print(f"{sum(map(len, results.values()))} runs in {time.time() - started:.0f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps([{"settings": dict(settings), "runs": runs}
                                         for settings, runs in results.items()], indent=1))


if __name__ == "__main__":
    main()
