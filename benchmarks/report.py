"""Results: one value per measurement, printed as tables, written as markdown and a chart."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import attrs

RESULTS = Path(__file__).parent / "results"


@attrs.frozen
class Result:
    """One drain figure: who, at which batch size, how fast."""

    section: str
    name: str
    tag: str
    batch: int | None = None
    n: int | None = None
    rate: float | None = None
    note: str = ""


@attrs.frozen
class Table:
    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    notes: Sequence[str] = ()
    left: Sequence[int] = (0,)  # columns of text, left-aligned; the others hold figures

    def text(self) -> str:
        widths = [
            max(len(str(cell)) for cell in column)
            for column in zip(self.headers, *self.rows, strict=True)
        ]

        def line(cells: Sequence[str]) -> str:
            first, *rest = cells
            return "  ".join(
                [
                    first.ljust(widths[0]),
                    *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)),
                ]
            )

        out = [self.title, line(self.headers), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in self.rows]
        out += [f"  {note}" for note in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"### {self.title}", "", "| " + " | ".join(self.headers) + " |"]
        out.append("|" + "|".join(["---"] + ["---:"] * (len(self.headers) - 1)) + "|")
        out += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            out += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(out)


def rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "n/a"
    return f"{value / base:.2f}x"


def write_markdown(path: Path, header: Sequence[str], tables: Sequence[Table]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ["# relay benchmark results", "", *header, ""]
    for table in tables:
        body += [table.markdown(), ""]
    body.append("![drain](drain.png)")
    path.write_text("\n".join(body) + "\n")


def write_chart(path: Path, drain: Sequence[Result], peers: Sequence[Result], title: str) -> str:
    """A grouped bar chart of drain events/s by batch size, peers beside; returns a note."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart not written: matplotlib is not installed (pip install -e '.[bench]')"
    names = list(dict.fromkeys(r.name for r in drain))
    batches = sorted({r.batch for r in drain if r.batch is not None})
    figure, axis = plt.subplots(figsize=(11, 5.5))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        values = [
            next((r.rate or 0 for r in drain if r.name == name and r.batch == b), 0)
            for b in batches
        ]
        positions = [j + (i - (len(names) - 1) / 2) * width for j in range(len(batches))]
        axis.bar(positions, values, width, label=name)
    labels = [f"batch {b}" for b in batches]
    measured = [p for p in peers if p.rate]
    for k, peer in enumerate(measured):
        x = len(batches) + k
        axis.bar([x], [peer.rate or 0], 0.5, label=peer.name, hatch="//")
        labels.append(textwrap.fill(peer.name, 24))
    axis.set_xticks(range(len(labels)), labels, fontsize=7)
    axis.set_ylabel("events/s")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axis.grid(axis="y", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return f"chart: {path}"


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
