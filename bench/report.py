"""Turn a run's raw results into docs/benchmarks.md (tables, targets, caveats) and docs/benchmarks.png.

`python -m bench.report [results.json]` rewrites both from saved results (default bench/results/latest.json)
without running the benchmark again.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.run import LANDING
from bench.traffic import OTHER

REPO = Path(__file__).resolve().parent.parent
KIB, MIB = 1024, 1024**2
NAMES = {"ours": "lambda_ingest", "baseline": "ocs_ingester"}
KIND_NAMES = {".fits": ".fits", ".fits.fz": ".fits.fz"}
STAGES = ("header_read", "md5", "lookup", "copy", "register")

# The targets of issue 6, verbatim in spirit; evaluated, never loosened.
READ_LIMIT = 256 * KIB
RSS_GROWTH_LIMIT = 32 * MIB
LARGE_RATIO_LIMIT = 0.1
SMALL_RATIO_LIMIT = 1.0
MD5_RATIO_LIMIT = 0.8
IMPORT_LIMIT_S = 1.0
BUNDLE_LIMIT = 250 * MIB  # Lambda's unzipped limit (262,144,000 bytes)


def median(values: Iterable[float]) -> float:
    items = list(values)
    return statistics.median(items) if items else float("nan")


def landing_read(run: dict[str, Any]) -> int:
    return int(run["traffic"]["received"].get(LANDING, 0))


def written(run: dict[str, Any]) -> int:
    """Bytes of S3 request bodies the process sent (PutObject/UploadPart...): data through the process."""
    return sum(n for bucket, n in run["traffic"]["sent"].items() if bucket != OTHER)


@dataclass
class Cell:
    """The runs of one system for one (layout, upload, size)."""

    runs: list[dict[str, Any]]

    def med(self, get: Callable[[dict[str, Any]], float]) -> float:
        return median(get(r) for r in self.runs)

    @property
    def wall(self) -> float:
        return self.med(lambda r: r["wall_s"])

    @property
    def cpu(self) -> float:
        return self.med(lambda r: r["cpu_s"])

    @property
    def rss(self) -> float:
        return self.med(lambda r: r["peak_rss_bytes"])

    @property
    def read(self) -> float:
        return self.med(landing_read)

    @property
    def written(self) -> float:
        return self.med(written)

    @property
    def file_size(self) -> float:
        return self.med(lambda r: r["file_size"])

    def stage(self, name: str) -> float:
        return self.med(lambda r: r["stages_ms"].get(name, 0.0) / 1000)


Key = tuple[str, str, int]  # (kind, upload, size)


def cells(results: dict[str, Any]) -> dict[Key, dict[str, Cell]]:
    grouped: dict[Key, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in results["runs"]:
        grouped[(run["kind"], run["upload"], run["size"])][run["system"]].append(run)
    order = {k: i for i, k in enumerate((".fits", ".fits.fz"))}
    keys = sorted(grouped, key=lambda k: (order.get(k[0], 9), k[1] != "single", k[2]))
    return {k: {system: Cell(runs) for system, runs in grouped[k].items()} for k in keys}


# -- formatting ----------------------------------------------------------------------------------------


def fmt_bytes(n: float) -> str:
    if n != n:  # nan
        return "-"
    if n == 0:
        return "0"
    if n < MIB:
        return f"{n / KIB:,.1f} KiB"
    if n < 1024 * MIB:
        return f"{n / MIB:,.1f} MiB"
    return f"{n / 1024**3:,.2f} GiB"


def fmt_size(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def fmt_s(x: float) -> str:
    return "-" if x != x else (f"{x:.3f}" if x < 10 else f"{x:.2f}")


def fmt_ratio(a: float, b: float) -> str:
    if not b or a != a or b != b:
        return "-"
    r = a / b
    return f"{r:.2f}x" if r >= 0.01 or r == 0 else f"{r:.1g}x"  # 0.0001x, not 0.00x


def nominal(size: int) -> str:
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= factor:
            value = size / factor
            return f"{value:g} {unit}"
    return f"{size} B"


def table(header: list[str], rows: list[list[str]], align: str = "") -> str:
    align = align or "l" * len(header)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- targets -------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: not measured in this run
    why: str = ""

    @property
    def status(self) -> str:
        return {True: "**met**", False: "**missed**", None: "not measured"}[self.met]


def _variants(grid: dict[Key, dict[str, Cell]]) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for kind, upload, _ in grid:
        if (kind, upload) not in seen:
            seen.append((kind, upload))
    return seen


def _sizes(grid: dict[Key, dict[str, Cell]]) -> list[int]:
    return sorted({size for _, _, size in grid})


def _hash_rate(md5_rate: float, plain_rate: float) -> float:
    """The rate of hashing alone, if reading and hashing take turns in one thread: 1/md5 = 1/plain + 1/hash."""
    slack = 1 / md5_rate - 1 / plain_rate
    return 1 / slack if slack > 0 else float("inf")


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    grid = cells(results)
    sizes = _sizes(grid)
    out: list[Verdict] = []

    # 1. single-part: header bytes only, nothing through the process
    single = [r for r in results["runs"] if r["system"] == "ours" and r["upload"] == "single"]
    if single:
        worst_read = max(single, key=landing_read)
        worst_written = max(written(r) for r in single)
        met = landing_read(worst_read) <= READ_LIMIT and worst_written == 0
        out.append(
            Verdict(
                "Single-part FITS, any size: bytes read from landing <= 256 KiB; bytes through the process "
                "for the copy: zero",
                f"at most {landing_read(worst_read):,} B ({fmt_bytes(landing_read(worst_read))}, "
                f"{landing_read(worst_read) / READ_LIMIT:.0%} of the limit) read over {len(single)} ingests "
                f"of every size and layout; at most {worst_written:,} B written to S3 by the process",
                met,
                "" if met else "the header walk or an upload moved more than the limit (see the bytes table)",
            )
        )

    # 2. peak RSS growth from the smallest to the largest frame
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        growths = []
        for kind, upload in _variants(grid):
            a, b = grid.get((kind, upload, lo), {}), grid.get((kind, upload, hi), {})
            if "ours" in a and "ours" in b:
                base = b["baseline"].rss - a["baseline"].rss if "baseline" in a and "baseline" in b else float("nan")
                growths.append((b["ours"].rss - a["ours"].rss, f"{kind} {upload}", base))
        if growths:
            worst = max(growths)
            met = worst[0] < RSS_GROWTH_LIMIT
            detail = "; ".join(
                f"{name}: {g / MIB:+.1f} MiB (ocs_ingester {base / MIB:+.0f} MiB)" for g, name, base in growths
            )
            out.append(
                Verdict(
                    f"Peak RSS grows by less than 32 MiB from {nominal(lo)} to {nominal(hi)} frames",
                    f"largest growth {worst[0] / MIB:+.1f} MiB ({worst[1]}); {detail}",
                    met,
                    ""
                    if met
                    else f"{worst[1]} grew by {worst[0] / MIB:.1f} MiB, {(worst[0] - RSS_GROWTH_LIMIT) / MIB:.1f} MiB "
                    "over the limit",
                )
            )

    # 3. wall time ratios at the largest and smallest sizes
    for size, limit, label in ((sizes[-1], LARGE_RATIO_LIMIT, "large"), (sizes[0], SMALL_RATIO_LIMIT, "small")):
        if label == "large" and size < 10**9:
            out.append(
                Verdict("Wall time at 1 GB at most 0.1x the baseline", f"largest size run: {nominal(size)}", None)
            )
            continue
        parts, whys, all_met = [], [], True
        for kind, upload in _variants(grid):
            cell = grid.get((kind, upload, size), {})
            if "ours" not in cell or "baseline" not in cell:
                continue
            ratio = cell["ours"].wall / cell["baseline"].wall
            ok = ratio <= limit
            all_met &= ok
            parts.append(
                f"{kind} {upload}: {ratio:.2f}x ({fmt_s(cell['ours'].wall)} s vs {fmt_s(cell['baseline'].wall)} s)"
            )
            if not ok:
                whys.append(_slow_variant(kind, upload, cell, ratio, limit))
        if whys:
            whys.append(_slow_reasons(grid, size, probes(results).get(size, {})))
        target = (
            f"Wall time at {nominal(size)} at most {limit:g}x the baseline"
            if label == "large"
            else f"Wall time at {nominal(size)} no slower than the baseline"
        )
        out.append(Verdict(target, "; ".join(parts), all_met if parts else None, " ".join(whys)))

    # 4. md5 streaming throughput
    md5_runs = [r["md5_bench"] for r in results["runs"] if "md5_bench" in r]
    if md5_runs:
        parts, whys, all_met = [], [], True
        for bench in sorted(md5_runs, key=lambda b: (b["size"], b["kind"])):
            md5_rate = bench["size"] / median(bench["md5_s"])
            plain_rate = bench["size"] / median(bench["plain_s"])
            ratio = md5_rate / plain_rate
            all_met &= ratio >= MD5_RATIO_LIMIT
            parts.append(
                f"{nominal(bench['size'])} {bench['kind']}: {ratio:.2f}x "
                f"({md5_rate / 1e6:,.0f} vs {plain_rate / 1e6:,.0f} MB/s)"
            )
        if not all_met:
            worst = min(md5_runs, key=lambda b: median(b["plain_s"]) / median(b["md5_s"]))
            md5_rate = worst["size"] / median(worst["md5_s"])
            plain_rate = worst["size"] / median(worst["plain_s"])
            hash_rate = worst.get("hash_only_rate", float("nan"))
            whys.append(
                f"worst case {nominal(worst['size'])} {worst['kind']}: the plain read ran at "
                f"{plain_rate / 1e6:,.0f} MB/s over loopback, while md5 alone, hashing bytes already in memory, "
                f"ran at {hash_rate / 1e6:,.0f} MB/s in the same process: no md5 stream could exceed "
                f"{min(1.0, hash_rate / plain_rate):.2f}x of that read here, however well it overlapped reading "
                f"and hashing. stream_md5 reads the next chunk in a second thread while it hashes the last, and got "
                f"{md5_rate / 1e6:,.0f} MB/s (taking turns would give 1/(1/read + 1/hash) = "
                f"{1 / (1 / plain_rate + 1 / hash_rate) / 1e6:,.0f} MB/s): the machine's two cores serve the "
                "reading thread, the hashing thread and moto's server producing the stream at once, so the overlap "
                "cannot reach the hash ceiling here. Against one S3 stream (typically well under the ~850 MB/s "
                "md5 rate of one core) the hash keeps up with the read; this run cannot show that."
            )
        out.append(
            Verdict(
                "Multipart objects: md5 streaming throughput at least 0.8x a plain download of the same object",
                "; ".join(parts),
                all_met,
                " ".join(whys),
            )
        )

    # 5. import and bundle
    ours_imports = results["imports"].get("ours", [])
    if ours_imports:
        t = median(ours_imports)
        out.append(
            Verdict(
                "Handler import under 1.0 s on this machine",
                f"median {t:.3f} s over {len(ours_imports)} cold processes (max {max(ours_imports):.3f} s)",
                t < IMPORT_LIMIT_S,
                "" if t < IMPORT_LIMIT_S else f"{t - IMPORT_LIMIT_S:.3f} s over",
            )
        )
    bundle = results.get("bundle") or {}
    if bundle.get("bytes"):
        size = bundle["bytes"]
        out.append(
            Verdict(
                "Bundle well under 250 MB unzipped",
                f"{size / 1e6:.1f} MB ({size / BUNDLE_LIMIT:.0%} of Lambda's 250 MiB), {bundle['files']:,} files",
                size < BUNDLE_LIMIT,
            )
        )
    return out


def probes(results: dict[str, Any]) -> dict[int, dict[str, float]]:
    """moto's own time per request, by nominal size (median over the probes of that size)."""
    found: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in results["runs"]:
        for op, t in (run.get("probe") or {}).items():
            found[run["size"]][op].append(t)
    return {size: {op: median(ts) for op, ts in ops.items()} for size, ops in sorted(found.items())}


def probe_table(results: dict[str, Any]) -> str:
    found = probes(results)
    ops = list(next(iter(found.values()), {}))
    rows = [[nominal(size), *(f"{timings.get(op, float('nan')):.3f}" for op in ops)] for size, timings in found.items()]
    return table(["object (nominal)", *(f"{op} (s)" for op in ops)], rows, "l" + "r" * len(ops))


def _slow_variant(kind: str, upload: str, cell: dict[str, Cell], ratio: float, limit: float) -> str:
    ours, base = cell["ours"], cell["baseline"]
    parts = {name: ours.stage(name) for name in STAGES}
    other = max(0.0, ours.wall - sum(parts.values()))
    biggest = sorted(((v, k) for k, v in parts.items()), reverse=True)[:2]
    shares = ", ".join(f"{name} {v:.3f} s" for v, name in biggest)
    return (
        f"{kind} {upload}: {ratio:.2f}x ({ratio / limit:.1f} times the allowed {limit:g}x); lambda_ingest's "
        f"{fmt_s(ours.wall)} s: {shares}, other steps {other:.3f} s; {_requests(ours)} AWS requests against "
        f"ocs_ingester's {_requests(base)}; CPU {fmt_s(ours.cpu)} s against {fmt_s(base.cpu)} s."
    )


def _requests(cell: Cell) -> str:
    return f"{cell.med(lambda r: sum(r['traffic']['requests'].values())):.0f}"


def _slow_reasons(grid: dict[Key, dict[str, Cell]], size: int, probe: dict[str, float]) -> str:
    """The explanations shared by the variants that missed, from this run's stage times and moto probe."""
    ours = [c["ours"] for (_, _, s), c in grid.items() if s == size and "ours" in c]
    copy, header = median(c.stage("copy") for c in ours), median(c.stage("header_read") for c in ours)
    wall = median(c.wall for c in ours)
    reasons = []
    if copy >= 0.3 * wall:
        reasons.append(
            f"The copy (median {copy:.2f} s) is done by moto inside the benchmark's own process: it reads, "
            "writes and md5-hashes every byte of the object there, on the machine's other core"
            + (
                f"; moto's CopyObject of such an object, timed alone, takes {probe['CopyObject']:.2f} s."
                if probe
                else "."
            )
        )
    if probe and probe.get("ListObjectVersions", 0) >= 0.1:
        reasons.append(
            f"On a redelivery (not measured here: a first delivery skips it) the orphan sweep lists the archive "
            f"key's versions; moto deep-copies every version, bytes included, to answer ListObjectVersions "
            f"({probe['ListObjectVersions']:.2f} s for this size)."
        )
    if header >= 0.1 * wall and probe and probe.get("ranged GET 100 KiB", 0) >= 0.1:
        reasons.append(
            f"moto reads the whole object to serve a ranged GET ({probe['ranged GET 100 KiB']:.2f} s for the "
            f"~100 KiB header read at this size), so even header_read (median {header:.2f} s) grows with size."
        )
    if any(c.stage("md5") >= 0.3 * c.wall for c in ours):
        reasons.append("Multipart ETags are not md5s, so those objects are streamed once to hash them (md5 target).")
    if not reasons:
        reasons.append(
            "At this size a request to the local endpoint costs about as much as moving the bytes, and "
            "lambda_ingest makes more of them (HEAD, ranged GET, CopyObject, two idempotency writes, the "
            "orphan sweep's version listing, landing DELETE) than ocs_ingester (HEAD, GET, PUT)."
        )
    cpu = {
        upload: median(c["ours"].cpu for (_, u, s), c in grid.items() if s == size and u == upload and "ours" in c)
        for upload in ("single", "multipart")
    }
    base_cpu = median(c["baseline"].cpu for (_, _, s), c in grid.items() if s == size and "baseline" in c)
    reasons.append(
        f"The function's own CPU time at this size: {fmt_s(cpu['single'])} s for a single-part object, "
        f"{fmt_s(cpu['multipart'])} s with the md5 of a multipart one, against ocs_ingester's {fmt_s(base_cpu)} s."
    )
    return " ".join(reasons)


# -- the document --------------------------------------------------------------------------------------


def results_tables(results: dict[str, Any]) -> tuple[str, str, str]:
    grid = cells(results)
    main_rows, byte_rows, stage_rows = [], [], []
    for (kind, upload, _size), by_system in grid.items():
        ours, base = by_system.get("ours"), by_system.get("baseline")
        any_cell = ours or base
        assert any_cell is not None
        head = [KIND_NAMES.get(kind, kind), upload, fmt_size(any_cell.file_size)]
        n = f"{len(ours.runs) if ours else 0}/{len(base.runs) if base else 0}"
        main_rows.append(
            [
                *head,
                n,
                fmt_s(ours.wall) if ours else "-",
                fmt_s(base.wall) if base else "-",
                fmt_ratio(ours.wall, base.wall) if ours and base else "-",
                fmt_s(ours.cpu) if ours else "-",
                fmt_s(base.cpu) if base else "-",
                f"{ours.rss / MIB:,.0f}" if ours else "-",
                f"{base.rss / MIB:,.0f}" if base else "-",
                fmt_ratio(ours.rss, base.rss) if ours and base else "-",
            ]
        )
        byte_rows.append(
            [
                *head,
                fmt_bytes(ours.read) if ours else "-",
                fmt_bytes(base.read) if base else "-",
                fmt_ratio(ours.read, base.read) if ours and base else "-",
                fmt_bytes(ours.written) if ours else "-",
                fmt_bytes(base.written) if base else "-",
            ]
        )
        if ours:
            stages = [ours.stage(name) for name in STAGES]
            other = max(0.0, ours.wall - sum(stages))
            base_stages = (
                f"{base.stage('download'):.3f} / {base.stage('ingest'):.3f}" if base else "-"
            )  # download / rest
            stage_rows.append([*head, *(f"{v:.3f}" for v in stages), f"{other:.3f}", fmt_s(ours.wall), base_stages])
    main = table(
        [
            "layout",
            "upload",
            "file size",
            "n",
            "wall lambda_ingest (s)",
            "wall ocs_ingester (s)",
            "time ratio",
            "CPU lambda_ingest (s)",
            "CPU ocs_ingester (s)",
            "peak RSS lambda_ingest (MiB)",
            "peak RSS ocs_ingester (MiB)",
            "RSS ratio",
        ],
        main_rows,
        "lllrrrrrrrrr",
    )
    moved = table(
        [
            "layout",
            "upload",
            "file size",
            "read from landing, lambda_ingest",
            "read from landing, ocs_ingester",
            "ratio",
            "written to S3 by the process, lambda_ingest",
            "written to S3 by the process, ocs_ingester",
        ],
        byte_rows,
        "lllrrrrr",
    )
    stages = table(
        [
            "layout",
            "upload",
            "file size",
            *STAGES,
            "other",
            "total",
            "ocs_ingester download / rest",
        ],
        stage_rows,
        "lll" + "r" * (len(STAGES) + 3),
    )
    return main, moved, stages


def md5_table(results: dict[str, Any]) -> str:
    rows = []
    for bench in sorted((r["md5_bench"] for r in results["runs"] if "md5_bench" in r), key=lambda b: b["size"]):
        md5_t, plain_t = median(bench["md5_s"]), median(bench["plain_s"])
        md5_rate, plain_rate = bench["size"] / md5_t, bench["size"] / plain_t
        rows.append(
            [
                fmt_size(bench["size"]),
                bench["kind"],
                str(len(bench["md5_s"])),
                f"{md5_t:.3f}",
                f"{plain_t:.3f}",
                f"{md5_rate / 1e6:,.0f}",
                f"{plain_rate / 1e6:,.0f}",
                f"{md5_rate / plain_rate:.2f}x",
                f"{bench.get('hash_only_rate', float('nan')) / 1e6:,.0f}",
                f"{min(1.0, bench.get('hash_only_rate', float('nan')) / plain_rate):.2f}x",
            ]
        )
    return table(
        [
            "object",
            "layout",
            "rounds",
            "stream_md5 (s)",
            "plain read (s)",
            "stream_md5 (MB/s)",
            "plain read (MB/s)",
            "ratio",
            "md5 alone, in memory (MB/s)",
            "ceiling (md5 alone / plain)",
        ],
        rows,
        "llrrrrrrrr",
    )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = cells(results)
    colours = {"ours": "#1f77b4", "baseline": "#d62728"}
    styles = {("single"): "-", ("multipart"): "--"}
    markers = {".fits": "o", ".fits.fz": "s"}
    fig, (ax_t, ax_c, ax_m) = plt.subplots(1, 3, figsize=(15, 5.2), constrained_layout=True)
    for kind, upload in _variants(grid):
        for system in ("ours", "baseline"):
            points = [
                (c[system].file_size / 1e6, c[system].wall, max(c[system].cpu, 1e-3), c[system].rss / MIB)
                for (k, u, _), c in grid.items()
                if k == kind and u == upload and system in c
            ]
            if not points:
                continue
            x, t, cpu, m = zip(*sorted(points), strict=True)
            label = f"{NAMES[system]} {kind} {upload}"
            style = {"color": colours[system], "linestyle": styles[upload], "marker": markers[kind]}
            ax_t.plot(x, t, label=label, **style)
            ax_c.plot(x, cpu, **style)
            ax_m.plot(x, m, **style)
    panels = (
        (ax_t, "Wall time per frame (median)", "s"),
        (ax_c, "CPU time of the process (median)", "s"),
        (ax_m, "Peak RSS of the process (median)", "MiB"),
    )
    for ax, title, unit in panels:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("frame size (MB)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=4, fontsize=8)
    fig.suptitle(
        f"lambda_ingest vs ocs_ingester {results['versions'].get('ocs-ingester', '')} "
        f"on a local S3 endpoint (moto), {results['date'][:10]}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def document(results: dict[str, Any], plot_name: str) -> str:
    m, v = results["machine"], results["versions"]
    cfg = results["config"]
    main, moved, stages = results_tables(results)
    checks = verdicts(results)
    grid = cells(results)
    sizes = _sizes(grid)
    loads = [r["load_before"] for r in results["runs"] if "load_before" in r]
    imports = results["imports"]
    bundle = results.get("bundle") or {}
    repeats = cfg["repeats"]
    large = cfg.get("large_repeats")
    repeat_text = f"{repeats} repeat{'s' if repeats != 1 else ''} per case and system" + (
        f" ({large} at {nominal(cfg['large_size'])} and above)" if large is not None and large != repeats else ""
    )
    headline = _headline(grid, sizes)

    lines = [
        "# Benchmark: lambda_ingest against ocs_ingester",
        "",
        "<!-- Generated by `python -m bench.run` (bench/report.py); edit the generator, not this file. -->",
        "",
        headline,
        "",
        "## How to rerun",
        "",
        "```",
        "make bench                                         # .venv/bin/python -m bench.run, "
        f"~{results['elapsed_s'] / 60:.0f} min here",
        "python -m bench.run --quick                        # smoke run: 1MB,8MB, 1 repeat, output in bench/results/",
        "python -m bench.run --sizes 10MB,100MB,1GB --repeats 5 --large-repeats 2   # fewer 1 GB repeats",
        "python -m bench.report bench/results/latest.json   # rewrite this page from saved results",
        "```",
        "",
        f"This page: `{results['command']}`, {results['date']} UTC, {results['elapsed_s'] / 60:.1f} minutes, "
        f"commit {results['commit']}.",
        "",
        "## Setup",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / 1024**3:.1f} GiB RAM, {m['os']}, "
        f"Linux {m['kernel']}, Python {m['python']}. Shared with other work: 1-minute load average before "
        f"each ingest {min(loads):.2f} to {max(loads):.2f}."
        if loads
        else "",
        "- Versions: " + ", ".join(f"{name} {ver}" for name, ver in v.items()) + ".",
        "- One local S3 endpoint (moto's threaded server on 127.0.0.1, issuing 32-character version ids) and "
        "one Science Archive emulator (lambda_ingest.local.archive_emulator), both in the benchmark's process, "
        "serve both systems in the same run.",
        "- **lambda_ingest**: `lambda_ingest.handler.handler` invoked with the S3 `ObjectCreated` notification "
        "of the landing object (URL-encoded key, the object's ETag) inside an SQS message, first receive, as the "
        "deployed stack delivers it; configured as deployed: idempotency table on (moto's DynamoDB), archive "
        "token from `AUTH_TOKEN`, X-Ray off (no daemon).",
        "- **ocs_ingester** (baseline): what a function built on ocs_ingester "
        f"{v.get('ocs-ingester', '')} does: `boto3` `download_fileobj` of the landing object into a `BytesIO` "
        "(memory, as ocs_ingester handles files; one GET stream, see caveats), then "
        "`ocs_ingester.ingester.upload_file_and_ingest_to_archive(fileobj, path=key)` with `FILESTORE_TYPE=s3`, "
        "the same endpoint, bucket and archive.",
        f"- Frames: synthetic LCO frames (`lambda_ingest.local.synthetic.write_frame`, a full LCO header, "
        f"a distinct basename and seed per ingest) of {', '.join(nominal(s) for s in sizes)} data, uncompressed "
        f"(`.fits`) and fpacked (`.fits.fz`), uploaded with one PUT (ETag = md5) and as multipart uploads of "
        f"{cfg['part_size'] / MIB:g} MiB parts (ETag not an md5). {repeat_text}; figures are medians.",
        "- Each ingest runs in a fresh child process (`python -m bench.worker`): import the modules, a first "
        "invocation on a small warm-up frame (the cold start), then the measured invocation on the benchmark "
        "frame, warm, as most invocations of a busy function are. The archive is emptied before both.",
        "- Wall time: the measured invocation, in the child. CPU: user + system time of the child during it. "
        "Peak RSS: the child's high-water mark (`VmHWM`, interpreter and imports included). Bytes: counted in "
        "the child at the HTTP layer (botocore's `send`, urllib3's `read`): response bytes of requests to "
        "the landing bucket, and S3 request bodies (`PutObject`, `UploadPart`) sent by the process.",
        "",
        "## Results",
        "",
        f"![wall time, CPU time and peak RSS against frame size]({plot_name})",
        "",
        "### Time and memory per frame",
        "",
        "`n` = measured ingests (lambda_ingest/ocs_ingester). Ratios are lambda_ingest / ocs_ingester "
        "(below 1: lambda_ingest is faster or smaller).",
        "",
        main,
        "",
        "### Bytes moved per frame",
        "",
        moved,
        "",
        "### Where lambda_ingest's time goes (median seconds per stage)",
        "",
        "Stages as the handler logs them; `other` = HEAD, idempotency records, orphan sweep, landing delete, "
        "logging. The last column splits the baseline into its download and the rest of "
        "`upload_file_and_ingest_to_archive` (md5 in memory, archive lookup, PUT, POST).",
        "",
        stages,
        "",
        "### What moto itself spends per request",
        "",
        "Timed from the benchmark's process against a landing object of each size (median of 3; CopyObject "
        "once), to show which part of the ingests' time is the local S3 server's. On S3 a 100 KiB ranged GET "
        "and a listing do not read the object.",
        "",
        probe_table(results),
        "",
        "### md5 of multipart objects: `stream_md5` against a plain read of the same object",
        "",
        "Same client, same 8 MiB chunks, alternating order; the plain read discards the bytes.",
        "",
        md5_table(results),
        "",
        "### Cold start",
        "",
        f"- Cold import of `lambda_ingest.handler` in a fresh interpreter: median "
        f"{median(imports.get('ours', [])):.3f} s (runs: {', '.join(f'{t:.3f}' for t in imports.get('ours', []))}). "
        f"ocs_ingester's modules (`boto3`, `ocs_ingester.ingester`): median "
        f"{median(imports.get('baseline', [])):.3f} s.",
        "- First invocation after the import, on the 64 KB warm-up frame of every ingest process (lazy imports "
        "of ocs_archive, astropy.io.fits/astropy.wcs and Powertools idempotency, client creation, first "
        "connections): " + _first_invocations(results) + ".",
        "",
        "### Bundle",
        "",
        f"- {bundle.get('bytes', 0) / 1e6:.1f} MB unzipped ({bundle.get('bytes', 0) / MIB:.1f} MiB), "
        f"{bundle.get('files', 0):,} files; measured from {bundle.get('source', 'n/a')}.",
        "",
        "## Targets",
        "",
        table(
            ["target", "measured", "status"],
            [[c.target, c.measured, c.status] for c in checks],
            "lll",
        ),
        "",
    ]
    misses = [c for c in checks if c.met is False]
    if misses:
        lines += ["### Why the missed targets were missed", ""]
        lines += [f"- **{c.target}**: {c.why}" for c in misses]
        lines.append("")
    lines += ["## Caveats", "", *caveats(results), ""]
    return "\n".join(line for line in lines if line is not None)


def _first_invocations(results: dict[str, Any]) -> str:
    parts = []
    for system in ("ours", "baseline"):
        times = [r["first_invocation_s"] for r in results["runs"] if r["system"] == system]
        if times:
            parts.append(
                f"{NAMES[system]} median {median(times):.3f} s (range {min(times):.3f} to {max(times):.3f} s, "
                f"{len(times)} processes)"
            )
    return "; ".join(parts)


def _headline(grid: dict[Key, dict[str, Cell]], sizes: list[int]) -> str:
    if not sizes:
        return "No runs."
    big = sizes[-1]
    parts = []
    for kind, upload in _variants(grid):
        cell = grid.get((kind, upload, big), {})
        if "ours" in cell and "baseline" in cell:
            parts.append(
                f"{kind} {upload}: {fmt_ratio(cell['ours'].wall, cell['baseline'].wall)} the time, "
                f"{fmt_ratio(cell['ours'].cpu, cell['baseline'].cpu)} the CPU, "
                f"{fmt_ratio(cell['ours'].rss, cell['baseline'].rss)} the peak memory, "
                f"{fmt_ratio(cell['ours'].read, cell['baseline'].read)} the bytes read"
            )
    return f"At {nominal(big)} per frame, lambda_ingest takes " + "; ".join(parts) + " of ocs_ingester's."


def _rss_before(results: dict[str, Any], system: str) -> str:
    values = [r["rss_before_bytes"] for r in results["runs"] if r["system"] == system]
    return f"{median(values) / MIB:.0f} MiB" if values else "-"


def caveats(results: dict[str, Any]) -> list[str]:
    return [
        "- **moto on loopback is not S3.** Reads run at memory speed over loopback, far faster than one S3 "
        "stream, which favours whatever moves the most bytes (the baseline) and makes hashing, not the network, "
        "the bottleneck of md5 streaming.",
        "- **Server-side copy is not free here, nor on S3.** moto performs `CopyObject` inside the benchmark's "
        "process: it reads, writes and md5-hashes the whole object on the machine's other core, so "
        "lambda_ingest's copy time at large sizes is moto's memory copy and hash. Real S3 copies on its own "
        "side in a time that also grows with size; that time is not measured here. What holds on S3 as here: "
        "no data bytes pass through the function for a single-part upload (bytes table).",
        "- **moto reads the whole object to answer a ranged GET**, so lambda_ingest's header read grows with "
        "the object's size here although it transfers the same ~100 KiB; on S3 a ranged GET costs the range. "
        "For the same reason the baseline downloads with one GET stream (`multipart_threshold` above the "
        "object size): boto3's default of parallel 8 MiB ranged GETs costs O(size^2) on moto (about 80 s for "
        "1 GB in a trial on this machine) and would inflate the baseline for a reason S3 does not have.",
        "- **The archive is emptied before every ingest.** ocs_ingester 3.2.0 checks `versions/?md5=`, which "
        "the current archive answers with every version, so against a non-empty archive it skips the upload "
        "and registers nothing (docs/science-archive-api.md). The baseline is therefore measured on the path "
        "where it does its work; in production it would not ingest at all after the first frame.",
        "- **Warm invocations.** The measured figure is each process's second invocation; the cold start "
        "(import + first invocation) is listed apart. lambda_ingest defers ocs_archive/astropy and its clients "
        "to the first invocation; the baseline imports astropy at import time.",
        "- **Peak RSS includes the interpreter and imports**: before the measured invocation the processes "
        f"held {_rss_before(results, 'ours')} (lambda_ingest) and {_rss_before(results, 'baseline')} "
        "(ocs_ingester). A deployed lambda_ingest has 1024 MB; the baseline would need memory of several times "
        "the frame size (it holds the download, then reads the whole buffer again for the md5 and the PUT).",
        "- **The systems do slightly different work.** lambda_ingest also writes two idempotency records "
        "(DynamoDB on moto) and deletes the landing object (conditionally on its ETag); the baseline does "
        "neither. The orphan sweep runs only on redeliveries, so it is not part of these figures. "
        "Both create their S3 client on the first invocation and reuse it.",
        "- **The archive emulator answers with TCP_NODELAY**, as nginx in front of the real archive does (the "
        "benchmark makes sure of it). Without it, every response on a kept-alive connection waits ~40 ms for the "
        "client's delayed ACK (the emulator writes headers and body separately); that penalises "
        "lambda_ingest, which keeps its archive connection open, and not ocs_ingester, which opens one per call.",
        "- **Checksums.** The benchmark's own landing uploads ask for checksums only when required (moto decodes "
        "botocore's streaming CRC trailer slowly); the child processes keep botocore's defaults, as deployed "
        "code would (the baseline's PUT computes a CRC32).",
        "- **Shared machine.** Two cores serve the child and the S3 server at once, and other work ran on the "
        "machine during the run (load averages in Setup); medians of repeats damp, not remove, that noise.",
        "- **Synthetic frames.** Real LCO headers; the data units are repeated noise blocks (or repeated "
        "compressed tiles for `.fits.fz`), which matters to neither system: neither decodes pixels.",
    ]


def write(results: dict[str, Any], doc: Path, plot_path: Path) -> None:
    plot(results, plot_path)
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
