"""Markdown tables and the plot of a benchmark run, from bench.figures (layout only, no judgement)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import figures as f
from bench.figures import MIB, STAGES, Cell, median

NAMES = {"ours": "lambda_ingest", "baseline": "ocs_ingester"}


def fmt_bytes(n: float) -> str:
    if n != n:  # nan
        return "-"
    if n == 0:
        return "0"
    if n < MIB:
        return f"{n / 1024:,.1f} KiB"
    if n < 1024 * MIB:
        return f"{n / MIB:,.1f} MiB"
    return f"{n / 1024**3:,.2f} GiB"


def fmt_size(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def nominal(size: float) -> str:
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size:g} B"


def fmt_s(x: float) -> str:
    return "-" if x != x else (f"{x:.3f}" if x < 10 else f"{x:.2f}")


def fmt_ratio(a: float, b: float) -> str:
    if not b or a != a or b != b:
        return "-"
    r = a / b
    return f"{r:.2f}x" if r >= 0.01 or r == 0 else f"{r:.1g}x"


def fmt_usd(x: float) -> str:
    return "-" if x != x else f"${x * 1e6:,.1f}µ"  # micro-dollars: per-frame costs are tiny


def table(header: list[str], rows: list[list[str]], align: str = "") -> str:
    align = align or "l" * len(header)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _head(key: f.Key, cell: Cell) -> list[str]:
    network, kind, upload, _ = key
    return [network, kind, upload, fmt_size(cell.file_size)]


def main_table(results: dict[str, Any]) -> str:
    rows = []
    for key, by_system in f.cells(results).items():
        ours, base = by_system.get("ours"), by_system.get("baseline")
        any_cell = ours or base
        assert any_cell is not None
        rows.append(
            [
                *_head(key, any_cell),
                f"{len(ours.runs) if ours else 0}/{len(base.runs) if base else 0}",
                fmt_s(ours.wall) if ours else "-",
                fmt_s(base.wall) if base else "-",
                fmt_ratio(ours.wall, base.wall) if ours and base else "-",
                fmt_s(ours.cpu) if ours else "-",
                fmt_s(base.cpu) if base else "-",
                f"{ours.rss / MIB:,.0f}" if ours else "-",
                f"{base.rss / MIB:,.0f}" if base else "-",
            ]
        )
    header = ["S3", "layout", "upload", "file size", "n", "wall lambda_ingest (s)", "wall ocs_ingester (s)"]
    header += ["time ratio", "CPU lambda_ingest (s)", "CPU ocs_ingester (s)", "peak RSS lambda_ingest (MiB)"]
    header += ["peak RSS ocs_ingester (MiB)"]
    return table(header, rows, "llll" + "r" * 8)


def bytes_table(results: dict[str, Any]) -> str:
    rows = []
    for key, by_system in f.cells(results).items():
        ours, base = by_system.get("ours"), by_system.get("baseline")
        if key[0] != "loopback" or not ours or not base:
            continue  # bytes and requests do not depend on the network
        rows.append(
            [
                *_head(key, ours)[1:],
                fmt_bytes(ours.read),
                fmt_bytes(base.read),
                fmt_bytes(ours.written),
                fmt_bytes(base.written),
                f"{ours.requests:.0f}",
                f"{base.requests:.0f}",
            ]
        )
    header = ["layout", "upload", "file size", "read from landing, lambda_ingest", "read, ocs_ingester"]
    header += ["written to S3 by the process, lambda_ingest", "written, ocs_ingester", "S3 requests, lambda_ingest"]
    header += ["S3 requests, ocs_ingester"]
    return table(header, rows, "lll" + "r" * 6)


def stage_table(results: dict[str, Any]) -> str:
    rows = []
    for key, by_system in f.cells(results).items():
        ours, base = by_system.get("ours"), by_system.get("baseline")
        if not ours:
            continue
        stages = [ours.stage(name) for name in STAGES]
        other = max(0.0, ours.wall - sum(stages))
        base_stages = f"{base.stage('download'):.3f} / {base.stage('ingest'):.3f}" if base else "-"
        rows.append([*_head(key, ours), *(f"{v:.3f}" for v in stages), f"{other:.3f}", fmt_s(ours.wall), base_stages])
    header = ["S3", "layout", "upload", "file size", *STAGES, "other", "total", "ocs_ingester download / rest"]
    return table(header, rows, "llll" + "r" * (len(STAGES) + 3))


def probe_table(results: dict[str, Any]) -> str:
    found: dict[int, dict[str, list[float]]] = {}
    for run in results["runs"]:
        for op, t in (run.get("probe") or {}).items():
            found.setdefault(run["size"], {}).setdefault(op, []).append(t)
    if not found:
        return "(not measured in this run)"
    ops = list(next(iter(found.values())))
    rows = [[nominal(size), *(f"{median(timings.get(op, [])):.3f}" for op in ops)] for size, timings in found.items()]
    return table(["object (nominal)", *(f"{op} (s)" for op in ops)], rows, "l" + "r" * len(ops))


def md5_table(results: dict[str, Any]) -> str:
    rows = [
        [
            b["network"],
            fmt_size(b.get("file_size", b["size"])),
            b["kind"],
            str(len(b["md5_s"])),
            f"{median(b['md5_s']):.3f}",
            f"{b['md5_rate'] / 1e6:,.0f}",
            f"{b['plain_rate'] / 1e6:,.0f}",
            f"{b['ceiling'] / 1e6:,.0f}",
            f"{b['of_ceiling']:.2f}x",
        ]
        for b in f.md5_benches(results)
    ]
    header = ["S3", "object", "layout", "rounds", "stream_md5 (s)", "stream_md5 (MB/s)", "one GET stream (MB/s)"]
    header += ["md5 alone, in memory (MB/s)", "stream / md5 alone"]
    return table(header, rows, "lllrrrrrr")


def copy_table(results: dict[str, Any]) -> str:
    sweep = results.get("copy_sweep") or []
    if not sweep:
        return "(not measured in this run)"
    rows = [
        [
            fmt_bytes(r["size"]),
            f"{r['copy_object_s']:.3f}",
            f"{r['parts']} x {fmt_bytes(r['part_size'])}",
            f"{r['parts_s']:.3f}",
            fmt_ratio(r["parts_s"], r["copy_object_s"]),
        ]
        for r in sorted(sweep, key=lambda r: r["size"])
    ]
    return table(["object", "one CopyObject (s)", "parts", "parallel UploadPartCopy (s)", "ratio"], rows, "lrlrr")


def cold_start_table(results: dict[str, Any]) -> str:
    cold = f.cold_start(results)
    if not cold:
        return "(not measured in this run)"
    rows = [
        [label, str(c["runs"]), f"{c['import_s']:.3f}", f"{c['first_invocation_s']:.3f}", f"{c['total_s']:.3f}"]
        for label, c in (
            ("before: init imports the handler only", cold["lazy"]),
            ("after: init also loads ocs_archive/astropy", cold["eager"]),
        )
    ]
    return table(["init", "processes", "import (s)", "first invocation (s)", "import + first (s)"], rows, "lrrrr")


def burst_table(results: dict[str, Any]) -> str:
    bursts = results.get("bursts") or []
    if not bursts:
        return "(not measured in this run)"
    rows = [
        [
            f"{b['count']:,} x {nominal(b['size'])}",
            str(b["workers"]),
            f"{b['ingested']:,}",
            f"{b['upload_s']:.1f}",
            f"{b['p50_s']:.2f}",
            f"{b['p95_s']:.2f}",
            f"{b['max_s']:.2f}",
            f"{b['last_done_s']:.1f}",
            str(b["retried_deliveries"]),
        ]
        for b in bursts
    ]
    header = ["burst", "instances", "ingested", "uploads took (s)", "p50 (s)", "p95 (s)", "max (s)"]
    header += ["last registered after (s)", "deliveries retried"]
    return table(header, rows, "lrrrrrrrr")


def cost_table(results: dict[str, Any]) -> str:
    rows = []
    for r in f.cost_rows(results):
        ours, base = r["ours"], r["baseline"]
        total_ours, total_base = ours["lambda_usd"] + ours["s3_usd"], base["lambda_usd"] + base["s3_usd"]
        rows.append(
            [
                r["kind"],
                r["upload"],
                fmt_size(r["file_size"]),
                f"{ours['gb_s']:.3f} ({ours['memory_mb']} MB)",
                f"{base['gb_s']:.3f} ({base['memory_mb']} MB)",
                fmt_usd(ours["lambda_usd"]),
                fmt_usd(base["lambda_usd"]),
                f"{fmt_usd(ours['s3_usd'])} ({ours['requests']:.0f})",
                f"{fmt_usd(base['s3_usd'])} ({base['requests']:.0f})",
                fmt_ratio(total_ours, total_base),
            ]
        )
    if not rows:
        return "(no case under the model in this run)"
    header = ["layout", "upload", "file size", "GB-s lambda_ingest", "GB-s ocs_ingester", "Lambda lambda_ingest"]
    header += ["Lambda ocs_ingester", "S3 requests lambda_ingest", "S3 requests ocs_ingester", "total ratio"]
    return table(header, rows, "lll" + "r" * 7)


def memory_table(results: dict[str, Any]) -> str:
    choices = f.memory_choices(results)
    if not choices:
        return "(no case under the model in this run)"
    rows = [
        [
            f"{c['memory_mb']:,} MB",
            "yes" if c["fits"] else "no",
            f"{c['mean_duration_s']:.3f}",
            f"{c['max_duration_s']:.3f}",
            fmt_usd(c["mean_cost_usd"]),
        ]
        for c in choices
    ]
    return table(["memory", "holds peak RSS", "mean duration (s)", "longest (s)", "mean Lambda cost"], rows, "llrrr")


def model_table() -> str:
    from bench.model import FIGURES

    return table(["quantity", "value", "source"], [[a, b, c] for a, b, c in FIGURES], "lll")


def targets_table(checks: list[f.Verdict]) -> str:
    return table(["target", "measured", "status"], [[c.target, c.measured, c.status] for c in checks], "lll")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = f.cells(results)
    colours = {"ours": "#1f77b4", "baseline": "#d62728"}
    styles = {"single": "-", "multipart": "--"}
    markers = {".fits": "o", ".fits.fz": "s"}
    networks = sorted({k[0] for k in grid})
    fig, axes = plt.subplots(1, len(networks) + 1, figsize=(5 * (len(networks) + 1), 5.2), constrained_layout=True)
    for ax, network in zip(axes, networks, strict=False):
        for kind, upload in f.variants(grid, network):
            for system in ("ours", "baseline"):
                points = [
                    (c[system].file_size / 1e6, c[system].wall)
                    for (net, k, u, _), c in grid.items()
                    if net == network and k == kind and u == upload and system in c
                ]
                if points:
                    x, t = zip(*sorted(points), strict=True)
                    style = {"color": colours[system], "linestyle": styles[upload], "marker": markers[kind]}
                    label = f"{NAMES[system]} {kind} {upload}" if network == networks[0] else None
                    ax.plot(x, t, label=label, **style)
        ax.set_title(f"Wall time per frame, S3: {network}")
        ax.set_ylabel("s")
    ax_m = axes[-1]
    for kind, upload in f.variants(grid):
        for system in ("ours", "baseline"):
            points = [
                (c[system].file_size / 1e6, c[system].rss / MIB)
                for (net, k, u, _), c in grid.items()
                if net == networks[0] and k == kind and u == upload and system in c
            ]
            if points:
                x, m = zip(*sorted(points), strict=True)
                ax_m.plot(x, m, color=colours[system], linestyle=styles[upload], marker=markers[kind])
    ax_m.set_title("Peak RSS of the process")
    ax_m.set_ylabel("MiB")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("frame size (MB)")
        ax.grid(True, which="both", alpha=0.3)
        # Plain numbers, not 6x10^-2: a reader compares values, not decades.
        # Labelled ticks at 1, 1.2, 1.5, 2, 3, 5, 7 of each decade: the memory axis is labelled where
        # lambda_ingest's flat ~120 MiB lines are, not only at 100 and 1000.
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 7.0)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    ours = [line for line in ax_m.get_lines() if line.get_color() == colours["ours"]]
    if ours:
        x_last, y_last = ours[0].get_xdata()[-1], ours[0].get_ydata()[-1]
        ax_m.annotate("lambda_ingest (every mode)", (x_last, y_last), textcoords="offset points", xytext=(-10, 12),
                      ha="right", color=colours["ours"], fontsize=8)  # fmt: skip
    # Long legend handles, so single (solid) and multipart (dashed) read apart.
    fig.legend(loc="outside lower center", ncol=4, fontsize=8, handlelength=4)
    fig.suptitle(f"lambda_ingest vs ocs_ingester {results['versions'].get('ocs-ingester', '')}, {results['date'][:10]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
