"""Write docs/benchmarks.md and docs/benchmarks.png from a run's raw results.

The text is bench/template.md; the tables come from bench/tables.py, the figures and targets from
bench/figures.py. `python -m bench.report [results.json]` rewrites both files from saved results
(default bench/results/latest.json) without running the benchmark again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from string import Template
from typing import Any

from bench import figures as f
from bench import tables as t

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).with_name("template.md")


def _headline(results: dict[str, Any]) -> str:
    grid = f.cells(results)
    largest = max(f.sizes(grid), default=0)
    parts = []
    for network in ("model", "loopback"):
        for kind, upload in f.variants(grid, network):
            cell = grid.get((network, kind, upload, largest), {})
            if "ours" in cell and "baseline" in cell:
                parts.append(f"{kind} {upload} {t.fmt_ratio(cell['ours'].wall, cell['baseline'].wall)}")
        if parts:
            return (
                f"At {t.nominal(largest)} per frame, under {'the S3 model' if network == 'model' else 'loopback'}, "
                f"lambda_ingest takes " + ", ".join(parts) + " of ocs_ingester's time (details below)."
            )
    return "No runs."


def _copy_threshold(results: dict[str, Any]) -> str:
    sweep = results.get("copy_sweep") or []
    if not sweep:
        return ""
    found = f.copy_threshold(sweep)
    configured = (results.get("settings") or {}).get("copy_multipart_threshold")
    shipped = (
        f" The function switches above {t.fmt_bytes(configured)} (`COPY_MULTIPART_THRESHOLD`)." if configured else ""
    )
    if found is None:
        return "In this run parallel parts did not beat one CopyObject at the largest sizes swept." + shipped
    return f"In this run parallel parts were faster from {t.fmt_bytes(found)} on." + shipped


def _memory_recommendation(results: dict[str, Any]) -> str:
    best = f.recommended_memory(f.memory_choices(results))
    if best is None:
        return ""
    return (
        f"Recommended: **{best['memory_mb']:,} MB** (the cheapest setting holding the peak RSS, or within 10% "
        f"of it and faster): mean {best['mean_duration_s']:.3f} s and {t.fmt_usd(best['mean_cost_usd'])} per "
        "frame over this run's cases under the model."
    )


def context(results: dict[str, Any], plot_name: str) -> dict[str, str]:
    m, v, cfg = results["machine"], results["versions"], results["config"]
    settings = results.get("settings") or {}
    loads = [r["load_before"] for r in results["runs"] if "load_before" in r]
    repeats, large = cfg["repeats"], cfg.get("large_repeats")
    imports = results.get("imports") or {}
    names = {"ours": "lambda_ingest", "ours-lazy": "lambda_ingest before issue 14", "baseline": "ocs_ingester"}
    bundle = results.get("bundle") or {}
    return {
        "headline": _headline(results),
        "elapsed_min": f"{results['elapsed_s'] / 60:.0f}",
        "command": results["command"],
        "date": results["date"],
        "commit": results["commit"],
        "machine": f"{m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / 1024**3:.1f} GiB RAM, {m['os']}, "
        f"Linux {m['kernel']}, Python {m['python']}.",
        "versions": ", ".join(f"{name} {ver}" for name, ver in v.items()),
        "settings": ", ".join(
            f"`{k.upper()}` {t.fmt_bytes(val) if 'size' in k or 'threshold' in k else val}"
            for k, val in settings.items()
        )
        or "defaults",
        "ocs_ingester": v.get("ocs-ingester", ""),
        "sizes": ", ".join(t.nominal(s) for s in cfg["sizes"]),
        "part_size": t.fmt_bytes(cfg["part_size"]),
        "repeats": f"{repeats} repeat{'s' if repeats != 1 else ''} per case and system"
        + (f" ({large} at {t.nominal(cfg['large_size'])} and above)" if large not in (None, repeats) else ""),
        "model_table": t.model_table(),
        "plot_name": plot_name,
        "main_table": t.main_table(results),
        "bytes_table": t.bytes_table(results),
        "stage_table": t.stage_table(results),
        "md5_chunk": t.fmt_bytes(settings.get("md5_chunk_size", float("nan"))),
        "md5_connections": str(settings.get("md5_connections", "-")),
        "md5_table": t.md5_table(results),
        "copy_threshold": _copy_threshold(results),
        "copy_table": t.copy_table(results),
        "cold_start_table": t.cold_start_table(results),
        "imports": ", ".join(f"{names.get(k, k)} {f.median(ts):.3f} s" for k, ts in imports.items() if ts),
        "e2e_workers": str(cfg.get("e2e_workers", "-")),
        "burst_table": t.burst_table(results),
        "deployed_memory": f"{f.DEPLOYED_MEMORY_MB:,}",
        "cost_table": t.cost_table(results),
        "memory_recommendation": _memory_recommendation(results),
        "memory_table": t.memory_table(results),
        "probe_table": t.probe_table(results),
        "bundle": f"{bundle.get('bytes', 0) / 1e6:.1f} MB unzipped, {bundle.get('files', 0):,} files; measured "
        f"from {bundle.get('source', 'n/a')}.",
        "targets_table": t.targets_table(f.verdicts(results)),
        "loads": f"{min(loads):.2f} to {max(loads):.2f}" if loads else "-",
    }


def document(results: dict[str, Any], plot_name: str) -> str:
    return Template(TEMPLATE.read_text()).substitute(context(results, plot_name))


def write(results: dict[str, Any], doc: Path, plot_path: Path) -> None:
    t.plot(results, plot_path)
    try:
        name = str(plot_path.relative_to(doc.parent))
    except ValueError:
        name = str(plot_path)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(document(results, name))


def main(argv: list[str] | None = None) -> int:
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="?", default=REPO / "bench" / "results" / "latest.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "benchmarks.png")
    args = parser.parse_args(argv)
    write(json.loads(args.results.read_text()), args.doc, args.plot)
    print(f"doc: {args.doc}\nplot: {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
