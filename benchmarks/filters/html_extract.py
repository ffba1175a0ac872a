"""html_extract's extractor settings on real HTML: trafilatura fast vs with fallbacks.

Input: every HTML file under /usr/share/doc (Debian package documentation).
Reports pages/s and MB/s in one process, pages yielding no text, and
characters extracted, for the op's row function with ``fast`` on and off.

    python -m benchmarks.filters.html_extract
"""
from __future__ import annotations

import glob
import os
import sys
import time


def main() -> int:
    from include.registry import apply_defaults, get_op
    from spark_jobs.ops.html_extract import _ExtractRow

    paths = sorted(p for p in glob.glob("/usr/share/doc/**/*.htm*", recursive=True)
                   if os.path.isfile(p))
    pages = []
    for p in paths:
        with open(p, errors="replace") as f:
            pages.append(f.read())
    mb = sum(len(h) for h in pages) / 1e6
    print(f"{len(pages)} pages, {mb:.1f} MB\n")
    print("| fast | pages/s | MB/s | no_text | chars extracted |")
    print("|---|---|---|---|---|")
    for fast in (True, False):
        params = apply_defaults(get_op("html_extract").meta, {"fast": fast})
        row = _ExtractRow(params, has_url=False)
        t0 = time.time()
        out = [row({"html": h}) for h in pages]
        dt = time.time() - t0
        print(f"| {fast} | {len(pages) / dt:.1f} | {mb / dt:.2f} | "
              f"{sum(1 for o in out if o.get('_reason'))} | "
              f"{sum(len(o.get('text') or '') for o in out)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
