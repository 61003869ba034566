"""comparison.png stays legible with many long configuration names (an Optuna study's): every name and legend
entry lies inside the figure, names do not overlap, numbers have 4 significant digits, the figure grows with its
rows."""
import re

import pytest

from cnnrun.report import build_report
from cnnrun.report.plots import MAX_CURVES, comparison_figure, row_names
from cnnrun.report.runs import group_jobs, read_sweep
from tests.report.fakes import fake_job

OPTUNA = ["optim.lr={lr}", "optim.weight_decay={wd}", "model.width={width}", "data.batch_size={bs}",
          "sched.warmup_epochs={warm}"]


def optuna_like_sweep(root, trials):
    """``trials`` configurations as an Optuna study leaves them: five parameters each, floats with 17 digits."""
    for i in range(trials):
        values = {"lr": 0.012345678901234567 * (i + 1), "wd": 1.2345678901234567e-05 * (i + 1),
                  "width": 0.5 + 0.0123456789 * i, "bs": 32 * (1 + i % 3), "warm": i % 4}
        fake_job(root, i, None, 1, 0.5 + 0.4 * i / trials, extra=[o.format(**values) for o in OPTUNA])


@pytest.mark.parametrize("trials", [4, 24])
def test_long_names_fit_the_figure_and_do_not_overlap(tmp_path, trials):
    import matplotlib.pyplot as plt

    optuna_like_sweep(tmp_path, trials)
    groups = group_jobs(read_sweep(tmp_path)[0])
    fig = comparison_figure(groups)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        drawn = fig.get_tightbbox(renderer)  # inches: everything drawn, names and legend included
        width, height = fig.get_size_inches()
        assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01 and drawn.x1 <= width + 0.01 and drawn.y1 <= height + 0.01
        accuracy, curves = fig.axes
        names = [t for t in accuracy.get_yticklabels() if t.get_text()]
        legend = [t for t in curves.get_legend().get_texts()]
        assert len(names) == trials and len(legend) == min(trials, MAX_CURVES)
        assert [t.get_text() for t in legend] == [t.get_text() for t in names][:MAX_CURVES]
        boxes = sorted((t.get_window_extent(renderer) for t in names), key=lambda b: b.y0)
        assert all(a.y1 <= b.y0 + 0.5 for a, b in zip(boxes, boxes[1:]))  # no two names overlap
        legend_boxes = sorted((t.get_window_extent(renderer) for t in legend), key=lambda b: b.y0)
        assert all(a.y1 <= b.y0 + 0.5 for a, b in zip(legend_boxes, legend_boxes[1:]))
    finally:
        plt.close(fig)


def test_names_are_ranked_short_and_rounded(tmp_path):
    optuna_like_sweep(tmp_path, 3)
    names = row_names(group_jobs(read_sweep(tmp_path)[0]))
    # ranked best first (trial 2 has the highest accuracy); keys by their last part; floats to 4 significant digits
    assert names[0].replace("\n", " ").split() == ["1.", "lr=0.03704", "weight_decay=3.704e-05", "width=0.5247",
                                                   "batch_size=96", "warmup_epochs=2"]
    assert all(len(line) <= 36 for name in names for line in name.splitlines())
    digits = re.findall(r"\d+\.\d+", " ".join(names))
    assert digits and all(len(d.replace(".", "").lstrip("0")) <= 4 for d in digits)


def test_the_figure_grows_with_its_rows(tmp_path):
    from PIL import Image

    heights = []
    for trials in (3, 30):
        sweep = tmp_path / str(trials)
        optuna_like_sweep(sweep, trials)
        with Image.open(build_report(sweep)["png"]) as png:
            heights.append(png.size[1])
    assert heights[1] > 3 * heights[0]
