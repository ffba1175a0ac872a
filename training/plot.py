"""The run report: loss and domain weights over steps, as a PNG and an HTML page."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any


def plot_run(summary: dict[str, Any], history: list[dict[str, Any]], out_dir: Path) -> tuple[Path, Path]:
    """Write ``training.png`` and ``report.html`` into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    evals = summary["eval"]
    domains = list(evals[0]["val_loss"]) if evals else list(history[0]["weights"]) if history else []
    fig, (ax_loss, ax_w) = plt.subplots(1, 2, figsize=(12, 4.5))
    if history:
        ax_loss.plot([r["step"] for r in history], [r["loss"] for r in history],
                     color="0.75", lw=0.8, label="train (batch)")
    for d in domains:
        ax_loss.plot([e["step"] for e in evals], [e["val_loss"][d] for e in evals], marker=".", label=f"val {d}")
    ax_loss.set(xlabel="step", ylabel="loss (nats/token)", title="loss")
    ax_loss.legend(fontsize=8)
    if history:
        steps = [r["step"] for r in history]
        ax_w.stackplot(steps, *[[r["weights"][d] for r in history] for d in domains], labels=domains)
        ax_w.set(xlabel="step", ylabel="weight", ylim=(0, 1),
                 title=f"domain weights ({'+'.join(summary['strategy'])})")
        ax_w.legend(fontsize=8, loc="upper right")
    fig.suptitle(summary["name"])
    fig.tight_layout()
    png = out_dir / "training.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)

    rows = "".join(
        f"<tr><td>{html.escape(d)}</td><td>{summary['final_val_loss'].get(d, float('nan')):.4f}</td>"
        f"<td>{evals[-1]['weights'].get(d, float('nan')):.3f}</td></tr>" for d in domains) if evals else ""
    img = base64.b64encode(png.read_bytes()).decode()
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>datamill training: {html.escape(summary['name'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:right}}</style></head>
<body><h1>{html.escape(summary['name'])}</h1>
<p>strategy: {html.escape(' + '.join(summary['strategy']))} &middot; steps: {summary['steps']}
&middot; device: {summary['device']} &middot; strategy overhead: {100 * (summary['strategy_overhead_share'] or 0):.2f}% of step time</p>
<img alt="loss and domain weights" src="data:image/png;base64,{img}">
<h2>final</h2><table><tr><th>domain</th><th>val loss</th><th>weight</th></tr>{rows}</table>
<h2>summary</h2><pre>{html.escape(json.dumps({k: v for k, v in summary.items() if k != 'eval'}, indent=1))}</pre>
</body></html>"""
    page_path = out_dir / "report.html"
    page_path.write_text(page)
    return png, page_path
