"""The accuracy figure a run and a benchmark table draw: every curve drawn and told apart, however many."""

from __future__ import annotations

import pytest

from hf_condense.hub import figures


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    """Draw curves and return the figure's axes (the figure is kept open instead of saved)."""
    kept = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: kept.append(fig))

    def draw(n: int):
        curves = {f"method {i}": [(10, 0.3 + 0.01 * i, 0.01)] for i in range(n)}
        figures.save_accuracy_curve(curves, tmp_path / "curve.png", title="t")
        return kept[-1].axes[0]

    return draw


@pytest.mark.parametrize("n", [3, 13, 21])
def test_every_curve_is_in_the_legend(drawn, n):
    ax = drawn(n)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"method {i}" for i in range(n)]


def test_a_table_of_methods_gets_distinct_colours_and_a_legend_beside_the_axes(drawn):
    ax = drawn(13)
    colours = [line.get_color() for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(colours) == 13 and len(set(map(str, colours))) == 13
    assert ax.figure.get_figwidth() > 5  # room for the legend beside the axes
