"""The report's plots, drawn with matplotlib (Agg) and returned as PNG data
URIs, so the HTML report is one self-contained file."""
from __future__ import annotations

import base64
import io
from typing import Any

BLUE, GREEN, RED, GREY, AMBER = "#0f6cbd", "#1a7f37", "#c62828", "#8c959f", "#9a6700"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "figure.dpi": 110})
    return plt


def _uri(fig) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _hist(ax, hist: dict[str, Any], color: str, log: bool) -> None:
    edges, counts = hist["edges"], hist["counts"]
    widths = [b - a for a, b in zip(edges, edges[1:])]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color=color, edgecolor="white",
           linewidth=0.4)
    if log and edges[0] >= 0:
        ax.set_xscale("symlog", linthresh=1)
    ax.set_ylabel("rows")


def length_histograms(stats: dict[str, Any]) -> str | None:
    units = [u for u in ("chars", "words", "tokens") if f"length.{u}" in stats.get("histograms", {})]
    if not units:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(units), figsize=(3.6 * len(units), 2.6))
    axes = axes if len(units) > 1 else [axes]
    for ax, u in zip(axes, units):
        _hist(ax, stats["histograms"][f"length.{u}"], BLUE, log=True)
        L = stats["length"][u]
        unit = "tokens (BPE)" if u == "tokens" and str(L.get("unit", "")).startswith("bpe") \
            else ("tokens (= words: no BPE trained)" if u == "tokens" else u)
        ax.set_title(f"length in {unit}")
        for q, style in (("p50", "--"), ("p95", ":")):
            if L.get(q) is not None:
                ax.axvline(L[q], color=RED, linestyle=style, linewidth=1, label=q)
        ax.legend(frameon=False)
    fig.tight_layout()
    return _uri(fig)


def funnel(stats: dict[str, Any]) -> str | None:
    steps = stats.get("funnel") or []
    if not steps:
        return None
    plt = _pyplot()
    labels = [f"{s['step']}. {s['op']}" for s in steps]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(steps) + 1.0))
    y = list(range(len(steps)))[::-1]
    kept = [s["kept"] - s.get("added", 0) for s in steps]
    removed = [s["removed"] for s in steps]
    quar = [s["quarantined"] for s in steps]
    ax.barh(y, kept, color=GREEN, label="kept")
    ax.barh(y, removed, left=kept, color=RED, label="removed")
    ax.barh(y, quar, left=[k + r for k, r in zip(kept, removed)], color=AMBER, label="quarantined")
    for yi, s in zip(y, steps):
        ax.text(s["rows_in"], yi, f"  {s['kept']:,} of {s['rows_in']:,}", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.set_xlabel("rows reaching the step")
    ax.set_xlim(0, max(s["rows_in"] for s in steps) * 1.25 or 1)
    ax.legend(frameon=False, loc="lower right", fontsize=8)
    ax.set_title("funnel: rows in, kept, removed and quarantined per step")
    fig.tight_layout()
    return _uri(fig)


def removals(stats: dict[str, Any]) -> str | None:
    reasons = stats.get("removed_by_reason") or {}
    if not reasons:
        return None
    plt = _pyplot()
    items = sorted(reasons.items(), key=lambda kv: kv[1])[-20:]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(items) + 1.0))
    ax.barh([k for k, _ in items], [v for _, v in items], color=RED)
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v:,}", va="center", fontsize=8)
    ax.set_xlabel("rows removed")
    ax.set_title("removals by step and rule")
    fig.tight_layout()
    return _uri(fig)


def categorical(stats: dict[str, Any]) -> list[tuple[str, str]]:
    plt = _pyplot()
    out = []
    for col, counts in (stats.get("by") or {}).items():
        items = list(counts.items())[:15][::-1]
        fig, ax = plt.subplots(figsize=(4.6, 0.28 * len(items) + 0.9))
        ax.barh([str(k)[:40] for k, _ in items], [v for _, v in items],
                color=[GREY if k in ("(null)", "(other)") else BLUE for k, _ in items])
        ax.set_title(col)
        ax.set_xlabel("rows")
        fig.tight_layout()
        out.append((col, _uri(fig)))
    return out


def scores(stats: dict[str, Any]) -> list[tuple[str, str]]:
    plt = _pyplot()
    out = []
    for col, s in (stats.get("scores") or {}).items():
        if not s.get("histogram"):
            continue
        fig, ax = plt.subplots(figsize=(4.6, 2.5))
        _hist(ax, s["histogram"], GREEN, log=False)
        ax.set_title(f"{col} ({s['nulls']:,} null)" if s.get("nulls") else col)
        fig.tight_layout()
        out.append((col, _uri(fig)))
    return out
