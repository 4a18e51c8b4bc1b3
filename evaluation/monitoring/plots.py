"""The monitoring report's figures: matplotlib (Agg, no display) rendered to inline PNG data
URLs, so the HTML page is one self-contained file that needs no network.

    >>> url = bar_chart("safety blocks", {"hate": 2, "jailbreak": 5})     # doctest: +SKIP
    >>> url.startswith("data:image/png;base64,")                          # doctest: +SKIP
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["bar_chart", "grouped_bars", "time_series"]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def time_series(
    title: str,
    buckets: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    ylabel: str = "",
    limit: float | None = None,
) -> str:
    """One line per series over time buckets (unix seconds); ``limit`` draws a threshold."""
    fig, ax = plt.subplots(figsize=(7, 3))
    xs = [datetime.fromtimestamp(b, UTC) for b in buckets]
    for name, ys in series.items():
        ax.plot(
            xs,  # type: ignore[arg-type]  # matplotlib's stubs omit datetime x values
            [float("nan") if y is None else y for y in ys],
            marker="o",
            ms=3,
            label=name,
        )
    if limit is not None:
        ax.axhline(limit, color="red", ls="--", lw=1, label=f"threshold {limit:g}")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(fontsize=7, loc="best")
    fig.autofmt_xdate()
    return _png(fig)


def bar_chart(
    title: str, values: Mapping[str, float], ylabel: str = "", limit: float | None = None
) -> str:
    fig, ax = plt.subplots(figsize=(7, 3))
    names = list(values) or ["(none)"]
    ax.bar(names, [values.get(n, 0.0) for n in names], color="#4472c4")
    if limit is not None:
        ax.axhline(limit, color="red", ls="--", lw=1, label=f"threshold {limit:g}")
        ax.legend(fontsize=7)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    return _png(fig)


def grouped_bars(
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    ylabel: str = "",
    limits: Mapping[str, float | None] | None = None,
) -> str:
    """Bars per group (deployment / variant), one colour per series (metric)."""
    fig, ax = plt.subplots(figsize=(7, 3))
    names = list(groups) or ["(none)"]
    width = 0.8 / max(1, len(series))
    for i, (label, ys) in enumerate(series.items()):
        pos = [j + i * width for j in range(len(names))]
        ax.bar(pos, [0.0 if y is None else y for y in ys] or [0.0], width, label=label)
        lim = (limits or {}).get(label)
        if lim is not None:
            ax.axhline(lim, ls="--", lw=1, color=f"C{i}", label=f"{label} threshold {lim:g}")
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(names))], names)
    ax.tick_params(axis="x", labelrotation=15, labelsize=7)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(fontsize=7)
    return _png(fig)
