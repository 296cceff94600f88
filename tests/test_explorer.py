"""The variance explorer: every control changes the plotted data, a redraw is fast, bad input fails."""

import matplotlib

matplotlib.use("Agg")

import pytest

from reinforce_edu.teaching.explorer import VarianceExplorer, explorer_rows

FAST = dict(n_batches=60)  # precision is not under test here


@pytest.fixture(scope="module")
def explorer():
    return VarianceExplorer(**FAST)


def plotted(ex: VarianceExplorer) -> tuple:
    """What the figure shows: bar labels and heights, read back from the axes."""
    names = tuple(t.get_text() for t in ex.ax.get_xticklabels())
    heights = tuple(round(p.get_height(), 12) for p in ex.ax.patches)
    return names, heights


@pytest.mark.parametrize("control,value", [("k", 8), ("offset", 4.0), ("n_arms", 9),
                                           ("baselines", ("none", "leave_one_out"))])
def test_each_control_changes_the_plotted_data(explorer, control, value):
    before_rows, before_plot = explorer.rows, plotted(explorer)
    n_redraws = len(explorer.redraw_times)
    getattr(explorer, control).value = value  # as a user moving the widget: the observer redraws
    assert len(explorer.redraw_times) == n_redraws + 1
    assert explorer.settings()[control] == value
    assert plotted(explorer) != before_plot
    assert [r["variance"] for r in explorer.rows] != [r["variance"] for r in before_rows]
    # the bars are the variances of the rows, in order
    assert plotted(explorer)[1] == tuple(round(r["variance"], 12) for r in explorer.rows)
    assert explorer.image.value[:4] == b"\x89PNG"


def test_offset_leaves_leave_one_out_unchanged_but_not_none():
    # the same samples at two offsets: LOO advantages are offset-free, plain REINFORCE's are not
    rows = {o: {r["baseline"]: r["variance"] for r in explorer_rows(("none", "leave_one_out"), 4, o, 5, **FAST)}
            for o in (0.0, 5.0)}
    assert rows[5.0]["leave_one_out"] == pytest.approx(rows[0.0]["leave_one_out"], rel=1e-4)
    assert rows[5.0]["none"] > 2 * rows[0.0]["none"]


def test_redraw_is_fast():
    ex = VarianceExplorer()  # default 100 batches, as in the lesson
    for k in (3, 5, 7):
        ex.k.value = k
    # the lesson asserts < 0.2 s; a loaded CI machine gets a generous bound
    assert sorted(ex.redraw_times)[1] < 1.0


def test_no_baseline_selected_draws_a_message(explorer):
    explorer.baselines.value = ()
    assert explorer.rows == [] and explorer.image.value[:4] == b"\x89PNG"
    explorer.baselines.value = ("value",)
    assert [r["baseline"] for r in explorer.rows] == ["value"]


def test_static_figure_has_one_panel_per_variation(explorer):
    fig = explorer.static_figure([{}, {"k": 6}, {"offset": 2.0}])
    drawn = [ax for ax in fig.axes if ax.patches]
    assert len(drawn) == 3
    assert [p.get_height() for p in drawn[0].patches] != [p.get_height() for p in drawn[1].patches]
    with pytest.raises(ValueError, match="unknown setting"):
        explorer.static_figure([{"arms": 3}])


def test_bad_input():
    with pytest.raises(ValueError, match="baselines must be a sequence of names"):
        explorer_rows(("nope",), 4, 0.0, 5)
    with pytest.raises(ValueError, match="baselines is empty"):
        explorer_rows((), 4, 0.0, 5)
    with pytest.raises(ValueError, match="k must be >= 2"):
        explorer_rows(("none",), 1, 0.0, 5)
    with pytest.raises(TypeError, match="offset must be a float"):
        explorer_rows(("none",), 4, "1", 5)
    with pytest.raises(ValueError, match="n_batches must be >= 2"):
        VarianceExplorer(n_batches=1)
