"""Reading a fabricated sweep's run folders: labels, the overrides every job shares, statuses, grouping, the
reference of each configuration and the fingerprints of effective configs."""
import json

import pytest
import yaml

from cnnrun.report.runs import group_jobs, job_dirs, read_sweep, reference_of, val_curve
from tests.report.fakes import fake_job, methods_sweep, resolved


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    methods_sweep(root)
    return root


def test_jobs_are_labelled_by_what_varies(sweep):
    jobs, common = read_sweep(sweep)
    assert common == ["trainer.max_epochs=2"] and {j.config for j in jobs} == {"baseline", "augment", "dropout"}
    assert [j.dir.name for j in jobs] == [str(i) for i in range(8)]
    assert [j.status for j in jobs][-2:] == ["failed", "unfinished"]  # the killed job is still listed
    assert [j.seed for j in jobs] == [1, 2, 3, 1, 2, 3, 1, "2"]  # the killed job's seed from its overrides


def test_groups_and_their_reference(sweep):
    groups = group_jobs(read_sweep(sweep)[0])
    assert [(g.config, len(g.jobs), len(g.ok)) for g in groups] == [("baseline", 3, 3), ("augment", 3, 3),
                                                                     ("dropout", 2, 0)]
    assert groups[1].values("test/acc") == {1: 0.80, 2: 0.90, 3: 0.85}
    assert all(reference_of(g, groups) is groups[0] for g in groups)  # baseline, in a comparison of methods


def test_fingerprints_ignore_the_seed_and_run_specific_keys(tmp_path):
    fake_job(tmp_path, 0, "baseline", 1, 0.8, config=resolved(1, "baseline"))
    fake_job(tmp_path, 1, "baseline", 2, 0.8, config=resolved(2, "baseline"))
    fake_job(tmp_path, 2, "baseline", 3, 0.8, config=resolved(3, "baseline", weight_decay=5e-4))
    fake_job(tmp_path, 3, "baseline", 4, 0.8)  # no config.yaml
    (tmp_path / "4").mkdir()
    (tmp_path / "4" / "config.yaml").write_text("seed: [1,\n")  # half written by a killed job
    (tmp_path / "4" / "metrics.json").write_text(json.dumps({"status": "failed"}))
    jobs, _ = read_sweep(tmp_path)
    prints = [j.effective for j in jobs]
    assert prints[0] == prints[1] != prints[2] and prints[3] is None and prints[4] is None


def test_temporary_files_of_interrupted_writes_are_not_taken_for_run_files(tmp_path):
    """A job killed while writing its metrics.json (a first one: no previous file) and config.yaml leaves hidden
    temporary files with half their content: the job reads as unfinished, with no effective config, and a folder
    holding only such files is no job."""
    fake_job(tmp_path, 0, "baseline", 1, None, metrics=False)
    half = json.dumps({"status": "completed", "metrics": {"test/acc": 0.9}})[:20]
    (tmp_path / "0" / ".metrics.json.4242.0a1b2c3d.tmp").write_text(half)
    (tmp_path / "0" / ".config.yaml.4242.0a1b2c3d.tmp").write_text("seed: 1\ndata: {name: dig")
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / ".metrics.json.4243.0a1b2c3d.tmp").write_text(half)
    jobs, _ = read_sweep(tmp_path)
    assert [j.dir.name for j in jobs] == ["0"]
    assert jobs[0].status == "unfinished" and jobs[0].metrics == {} and jobs[0].effective is None


def test_validation_curve_from_the_history(sweep):
    jobs, _ = read_sweep(sweep)
    assert val_curve(jobs[0]) == [(0, pytest.approx(0.60)), (1, pytest.approx(0.70))]
    assert val_curve(jobs[7]) == []  # killed: no history, no TensorBoard events


def test_job_folders_are_read_in_the_order_of_their_numbers(tmp_path):
    """Named job folders (``<num>_<overrides>``) sort by their leading number: job 2 before job 10; folders without
    a number (a single run read as a sweep) after them."""
    for name in ("10_optim.lr=0.001", "2_optim.lr=0.1", "0", "run"):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    assert [p.name for p in job_dirs(tmp_path)] == ["0", "2_optim.lr=0.1", "10_optim.lr=0.001", "run"]


def test_a_refresh_parses_only_the_configs_it_has_not_seen(tmp_path, monkeypatch):
    """The report is rebuilt after every job of a sweep: each job's config.yaml is parsed once, not at every refresh
    (which made a sweep's refresh grow with its jobs), and the refresh still sees a new job."""
    from cnnrun.report import build_report

    parsed = []
    load = yaml.load
    monkeypatch.setattr(yaml, "load", lambda source, **kw: parsed.append(source) or load(source, **kw))
    for num, seed in enumerate((101, 102)):  # seeds of this test only: no other test's configs were seen
        fake_job(tmp_path, num, "baseline", seed, 0.8, config=resolved(seed, "baseline"))
    build_report(tmp_path, figure=False)
    assert len(parsed) == 2
    fake_job(tmp_path, 2, "augment", 101, 0.9, config=resolved(101, "augment", augment="flip"))
    md = build_report(tmp_path, figure=False)["md"].read_text()
    assert len(parsed) == 3 and "`augment`, as its file says" in md


def test_a_rewritten_config_is_read_again(tmp_path):
    """A config.yaml rewritten in place (same folder, same size, within the file system's time resolution) gives its
    new fingerprint: what was parsed is known by the file's content, not by its name or time."""
    fake_job(tmp_path, 0, "baseline", 201, 0.8, config=resolved(201, "baseline", weight_decay=0.1))
    before = read_sweep(tmp_path)[0][0].effective
    (tmp_path / "0" / "config.yaml").write_text(yaml.safe_dump(resolved(201, "baseline", weight_decay=0.2)))
    fake_job(tmp_path / "fresh", 0, "baseline", 201, 0.8, config=resolved(201, "baseline", weight_decay=0.2))
    after = read_sweep(tmp_path)[0][0].effective
    assert after != before and after == read_sweep(tmp_path / "fresh")[0][0].effective
