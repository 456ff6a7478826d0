"""``hybridformer report``: re-render a run folder's ``report.md`` and plots from its ``results.json``.

    hybridformer report outputs/demo                  # writes outputs/demo/report.md, outputs/demo/plots/*.png
    hybridformer report outputs/demo --out-dir /tmp/r # the same, elsewhere

The rows and the fields each plot reads are described in ``hybridformer.evaluation.report``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder holding results.json")
    parser.add_argument("--out-dir", type=Path, metavar="DIR", help="where report.md and plots/ go (default: RUN_DIR)")


def run(args: argparse.Namespace) -> int:
    from hybridformer.evaluation.report import REPORT_FILE, load_run, render_report

    if getattr(args, "overrides", None):
        print(f"hybridformer report: error: unknown arguments {' '.join(args.overrides)}", file=sys.stderr)
        return 2
    report = render_report(load_run(args.run_dir), args.out_dir)
    out = args.out_dir or args.run_dir
    print(f"wrote {out / REPORT_FILE} and {len(report.figures)} plot(s): "
          + (", ".join(str(p) for p in report.figures.values()) or "none"))
    for name, needs in report.absent.items():
        print(f"  not drawn: {name} (needs {needs})")
    return 0
