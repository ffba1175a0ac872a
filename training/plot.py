"""The run report: loss and domain weights over steps, as a PNG and an HTML page.

The figure is 10 x 4.2 inches at 100 dpi (about 1000 px wide) with each
legend below its axes, saved with a tight bounding box so the legends are
part of the image; the page scales the image to its width
(``max-width: 100%``), so it fits a 1300-px window (and narrower ones)
with every legend visible.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 4.2, 100


def plot_run(summary: dict[str, Any], history: list[dict[str, Any]], out_dir: Path) -> tuple[Path, Path]:
    """Write ``training.png`` and ``report.html`` into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    evals = summary["eval"]
    domains = list(evals[0]["val_loss"]) if evals else list(history[0]["weights"]) if history else []
    ncol = min(len(domains) + 1, 3)
    fig, (ax_loss, ax_w) = plt.subplots(1, 2, figsize=(WIDTH_IN, HEIGHT_IN))
    if history:
        ax_loss.plot([r["step"] for r in history], [r["loss"] for r in history],
                     color="0.75", lw=0.8, label="train (batch)")
    for d in domains:
        ax_loss.plot([e["step"] for e in evals], [e["val_loss"][d] for e in evals], marker=".",
                     label=f"eval {d}")
    ax_loss.set(xlabel="step", ylabel="loss (nats/token)", title="loss (evaluation split)")
    ax_loss.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol,
                   frameon=False)
    if history:
        steps = [r["step"] for r in history]
        ax_w.stackplot(steps, *[[r["weights"][d] for r in history] for d in domains], labels=domains)
        ax_w.set(xlabel="step", ylabel="weight", ylim=(0, 1), xlim=(steps[0], steps[-1]),
                 title=f"domain weights ({'+'.join(summary['strategy'])})")
        ax_w.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                    ncol=min(len(domains), 4), frameon=False)
    fig.suptitle(summary["name"])
    fig.tight_layout()
    png = out_dir / "training.png"
    fig.savefig(png, dpi=DPI, bbox_inches="tight")
    plt.close(fig)

    final_w = evals[-1]["weights"] if evals else {}
    rows = "".join(
        f"<tr><td>{html.escape(d)}</td><td class=num>{summary['final_val_loss'].get(d, float('nan')):.4f}</td>"
        f"<td class=num>{final_w.get(d, float('nan')):.3f}</td></tr>" for d in domains)
    img = base64.b64encode(png.read_bytes()).decode()
    share = lambda key: f"{100 * (summary.get(key) or 0):.2f}%"  # noqa: E731
    facts = (f"strategy: {html.escape(' + '.join(summary['strategy']))} &middot; steps: {summary['steps']}"
             f" &middot; ranks: {summary.get('ranks', 1)} &middot; device: {html.escape(summary['device'])}"
             f" &middot; strategy overhead: {share('strategy_overhead_share')} &middot; signals "
             f"overhead: {share('signals_overhead_share')} of step time")
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>datamill training: {html.escape(summary['name'])}</title>
<style>body{{font-family:sans-serif;margin:16px 20px;max-width:100%;box-sizing:border-box}}
img{{max-width:100%;height:auto;display:block}}td,th{{padding:.2em .8em;text-align:left}}
td.num{{text-align:right;font-variant-numeric:tabular-nums}}
pre{{white-space:pre-wrap;word-break:break-word;background:#f7f9fb;padding:8px}}</style></head>
<body><h1>{html.escape(summary['name'])}</h1>
<p>{facts}</p>
<p>run {html.escape(str(summary.get('run_id')))}; losses are on the evaluation split, which no
strategy sees.</p>
<img alt="loss and domain weights" src="data:image/png;base64,{img}">
<h2>final</h2><table><tr><th>domain</th><th>eval loss</th><th>weight</th></tr>{rows}</table>
<h2>summary</h2><pre>{html.escape(json.dumps({k: v for k, v in summary.items() if k != 'eval'}, indent=1))}</pre>
</body></html>"""
    page_path = out_dir / "report.html"
    page_path.write_text(page)
    return png, page_path
