"""figure2.plot: the optional baselines (chapter 6 draws the mean-image model on MNIST)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from aevb.experiments import figure2  # noqa: E402


def _results():
    runs = []
    for which, z in [("mnist", 3), ("continuous", 2)]:
        for algo, shift in (("aevb", 0.0), ("wake-sleep", -5.0)):
            bounds = [-300.0 + shift, -200.0 + shift, -180.0 + shift]
            runs.append(
                {
                    "data": which,
                    "z_dim": z,
                    "algorithm": algo,
                    "hidden": 8,
                    "history": {
                        "samples": [100, 1000, 10000],
                        "train_bound": bounds,
                        "test_bound": [b - 2 for b in bounds],
                        "seconds": [0.1, 0.2, 0.3],
                    },
                }
            )
    return {
        "settings": {"profile": "smoke", "samples": 10000},
        "data": {"continuous_name": "fashion-mnist"},
        "runs": runs,
    }


def _baseline_lines(ax):
    return [ln for ln in ax.get_lines() if ln.get_label() == figure2.BASELINE_LABEL]


def test_baseline_is_a_horizontal_line_in_the_mnist_panels_only_within_the_limits():
    fig = figure2.plot(_results(), baselines={"mnist": -400.0})
    try:
        axes = fig.axes
        mnist_axes = axes[: len(figure2.MNIST_LATENTS)]
        for ax in mnist_axes:
            (line,) = _baseline_lines(ax)
            assert set(line.get_ydata()) == {-400.0}
            lo, hi = ax.get_ylim()
            assert lo < -400.0 < hi
        for ax in axes[len(figure2.MNIST_LATENTS) :]:
            assert not _baseline_lines(ax)
        labels = [t.get_text() for t in axes[-1].get_legend().get_texts()]
        assert figure2.BASELINE_LABEL in labels
    finally:
        plt.close(fig)


def test_without_baselines_the_figure_has_no_baseline_line():
    fig = figure2.plot(_results())
    try:
        assert not any(_baseline_lines(ax) for ax in fig.axes)
    finally:
        plt.close(fig)
