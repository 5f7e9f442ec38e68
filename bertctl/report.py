"""Rich tables for the terminal and matplotlib figures (PNG) for run folders.

Every command ends by printing its results table(s) and saving its figures next to the
JSON, so what is on screen and what is on disk are the same numbers. The library builds
`Table`s (what to show); the commands print them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, NamedTuple, Sequence


class Table(NamedTuple):
    """A results table to print: `print_table(*t)`."""

    title: str
    rows: Sequence[dict]
    columns: Sequence[str] | None = None
    caption: str | None = None


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def table(title: str, rows: Sequence[dict], columns: Iterable[str] | None = None, caption: str | None = None):
    from rich.table import Table

    columns = list(columns or (rows[0].keys() if rows else []))
    t = Table(title=title, caption=caption, title_style="bold")
    for c in columns:
        t.add_column(c, justify="left" if c in {"name", "task", "model", "metric", "split", "file"} else "right")
    for row in rows:
        t.add_row(*(fmt(row.get(c)) for c in columns))
    return t


def print_table(title: str, rows: Sequence[dict], columns: Iterable[str] | None = None, caption: str | None = None) -> None:
    from bertctl.console import console

    console().print(table(title, rows, columns, caption))


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def line_plot(path: Path, series: dict[str, tuple[Sequence, Sequence]], xlabel: str, ylabel: str, title: str,
              hlines: dict[str, float] | None = None, legend_outside: bool = False) -> Path:
    """One line per series; `legend_outside`: the legend to the right of the axes (many series)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.4 if legend_outside else 6.4, 4.2))
    for label, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o", label=label)
    for label, y in (hlines or {}).items():
        ax.axhline(y, linestyle="--", linewidth=1, color="gray")
        ax.annotate(label, (0.01, y), xycoords=("axes fraction", "data"), fontsize=8, color="gray", va="bottom")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(**({"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8} if legend_outside else {}))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def heatmap(path: Path, matrix, labels: Sequence[str], title: str) -> Path:
    plt = _plt()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n))
    im = ax.imshow(matrix, cmap="viridis", vmin=min(0.0, float(min(map(min, matrix)))), vmax=1.0)
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{matrix[i][j]:.2f}", ha="center", va="center", fontsize=6, color="w")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def bar_chart(path: Path, groups: Sequence[str], series: dict[str, Sequence[float]], ylabel: str, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(groups)), 4.2))
    width = 0.8 / max(1, len(series))
    for k, (label, values) in enumerate(series.items()):
        ax.bar([i + k * width for i in range(len(groups))], list(values), width, label=label)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(groups))], groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
