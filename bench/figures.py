"""The figures of a benchmark run: medians per case, the targets and their verdicts, cost, copy threshold.

Numbers only (no prose, no markdown): bench.tables lays them out, bench/template.md says what they mean.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bench.run import LANDING
from bench.traffic import OTHER

KIB, MIB = 1024, 1024**2
STAGES = ("header_read", "md5", "lookup", "copy", "register")

# Targets (issues 6 and 14); evaluated, never loosened.
READ_LIMIT = 256 * KIB
RSS_GROWTH_LIMIT = 32 * MIB
SMALL_RATIO_LIMIT = 0.4  # 10 MB under the model, single-part and multipart
LARGE_MULTIPART_RATIO_LIMIT = 0.3  # 1 GB multipart under the model
LARGE_SINGLE_RATIO_LIMIT = 0.1  # 1 GB single-part under the model
MD5_CEILING_RATIO = 0.8  # md5 stream of a multipart 1 GB frame against md5 alone
IMPORT_LIMIT_S = 1.0
BUNDLE_LIMIT = 250 * MIB

# Prices (us-east-1, https://aws.amazon.com/lambda/pricing/ and https://aws.amazon.com/s3/pricing/).
LAMBDA_GB_S = {"arm64": 0.0000133334, "x86_64": 0.0000166667}  # USD per GB-second
S3_TIER1_PER_REQUEST = 0.005 / 1000  # PUT, COPY, POST, LIST
S3_TIER2_PER_REQUEST = 0.0004 / 1000  # GET, HEAD (DELETE is free)
DEPLOYED_MEMORY_MB = 1024  # infra/config.py memory_mb default
FULL_VCPU_MB = 1769  # Lambda allocates one full vCPU at 1,769 MB (CPU in proportion to memory)
MEMORY_CHOICES_MB = (512, 1024, 1769, 2048, 3008)


def median(values: Iterable[float]) -> float:
    items = list(values)
    return statistics.median(items) if items else float("nan")


def landing_read(run: dict[str, Any]) -> int:
    return int(run["traffic"]["received"].get(LANDING, 0))


def written(run: dict[str, Any]) -> int:
    """Bytes of S3 request bodies the process sent (PutObject/UploadPart...): data through the process."""
    return sum(n for bucket, n in run["traffic"]["sent"].items() if bucket != OTHER)


def s3_request_cost(run: dict[str, Any]) -> float:
    """S3 request charges of one ingest, from the requests it made (GETs of listings counted as GETs)."""
    cost = 0.0
    for name, count in run["traffic"]["requests"].items():
        method, _, target = name.partition(" ")
        if target == OTHER:
            continue
        if method in ("PUT", "POST"):
            cost += count * S3_TIER1_PER_REQUEST
        elif method in ("GET", "HEAD"):
            cost += count * S3_TIER2_PER_REQUEST
    return cost


@dataclass
class Cell:
    """The runs of one system for one (network, layout, upload, size)."""

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

    @property
    def requests(self) -> float:
        return self.med(lambda r: sum(r["traffic"]["requests"].values()))

    @property
    def request_cost(self) -> float:
        return self.med(s3_request_cost)

    def stage(self, name: str) -> float:
        return self.med(lambda r: r["stages_ms"].get(name, 0.0) / 1000)


Key = tuple[str, str, str, int]  # (network, kind, upload, size)
Grid = dict[Key, dict[str, Cell]]


def cells(results: dict[str, Any]) -> Grid:
    grouped: dict[Key, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in results["runs"]:
        grouped[(run.get("network", "loopback"), run["kind"], run["upload"], run["size"])][run["system"]].append(run)
    order = {".fits": 0, ".fits.fz": 1, "loopback": 0, "model": 1}
    keys = sorted(grouped, key=lambda k: (order.get(k[0], 9), order.get(k[1], 9), k[2] != "single", k[3]))
    return {k: {system: Cell(runs) for system, runs in grouped[k].items()} for k in keys}


def variants(grid: Grid, network: str | None = None) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for net, kind, upload, _ in grid:
        if (network is None or net == network) and (kind, upload) not in seen:
            seen.append((kind, upload))
    return seen


def sizes(grid: Grid) -> list[int]:
    return sorted({size for *_, size in grid})


def ratio(cell: dict[str, Cell], get: Callable[[Cell], float] = lambda c: c.wall) -> float:
    if "ours" not in cell or "baseline" not in cell:
        return float("nan")
    base = get(cell["baseline"])
    return get(cell["ours"]) / base if base else float("nan")


# -- targets -------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: not measured in this run

    @property
    def status(self) -> str:
        return {True: "**met**", False: "**missed**", None: "not measured"}[self.met]


def _ratio_target(grid: Grid, size: int, uploads: tuple[str, ...], limit: float, target: str) -> Verdict:
    parts, ok = [], True
    for kind, upload in variants(grid, "model"):
        cell = grid.get(("model", kind, upload, size), {})
        if upload not in uploads or "ours" not in cell or "baseline" not in cell:
            continue
        r = ratio(cell)
        ok &= r <= limit
        parts.append(f"{kind} {upload}: {r:.2f}x ({cell['ours'].wall:.3f} s vs {cell['baseline'].wall:.3f} s)")
    return Verdict(
        target, "; ".join(parts) or f"no {size / 1e6:g} MB case under the model in this run", ok if parts else None
    )


def copy_floor(results: dict[str, Any], size: int, grid: Grid) -> str:
    """What the model alone allows at `size`: the copy (its fastest form) plus the two requests every ingest
    makes around it (the header read before, the landing delete after), against the baseline's time."""
    model, min_part = results["model"], 5 * MIB
    latency, rate = model["first_byte_s"], model["copy_rate"]
    copy_object = latency + size / rate
    in_parts = 3 * latency + min(size, min_part) / rate  # create, the largest part (parts in parallel), complete
    floor = 2 * latency + min(copy_object, in_parts)
    baselines = [
        c["baseline"].wall for (net, _, _, sz), c in grid.items() if net == "model" and sz == size and "baseline" in c
    ]
    against = (
        f" = {floor / median(baselines):.2f}x ocs_ingester's median {median(baselines):.3f} s" if baselines else ""
    )
    return (
        f"Floor under the model: {latency * 1e3:g} ms header read + copy ({copy_object:.3f} s as one CopyObject at "
        f"{rate / 1e6:g} MB/s, {in_parts:.3f} s as parallel parts of at least 5 MiB with create and complete) + "
        f"{latency * 1e3:g} ms landing delete = {floor:.3f} s{against}, before any CPU: the copy alone, at S3's "
        "per-request copy rate, leaves no room for this target"
    )


def md5_benches(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every md5 measurement with its rates: stream_md5, one plain GET stream, md5 alone (the ceiling)."""
    found = []
    for run in results["runs"]:
        bench = run.get("md5_bench")
        if not bench:
            continue
        size = bench.get("file_size", bench["size"])
        md5_rate, plain_rate = size / median(bench["md5_s"]), size / median(bench["plain_s"])
        ceiling = bench.get("hash_only_rate", float("nan"))
        found.append(
            {
                **bench,
                "network": bench.get("network", "loopback"),
                "md5_rate": md5_rate,
                "plain_rate": plain_rate,
                "ceiling": ceiling,
                "of_ceiling": md5_rate / ceiling,
            }
        )
    return sorted(found, key=lambda b: (b["network"], b["size"], b["kind"]))


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    grid = cells(results)
    all_sizes = sizes(grid)
    out: list[Verdict] = []
    one_gb = 10**9

    ratio_targets = (
        (10**7, ("single", "multipart"), SMALL_RATIO_LIMIT, "10 MB, single-part and multipart"),
        (one_gb, ("multipart",), LARGE_MULTIPART_RATIO_LIMIT, "1 GB multipart"),
        (one_gb, ("single",), LARGE_SINGLE_RATIO_LIMIT, "1 GB single-part"),
    )
    for size, uploads, limit, what in ratio_targets:
        target = f"{what} under the S3 model: at most {limit:g}x ocs_ingester's time"
        verdict = _ratio_target(grid, size, uploads, limit, target)
        if size == 10**7 and verdict.met is False and results.get("model"):
            verdict = Verdict(verdict.target, f"{verdict.measured}. {copy_floor(results, size, grid)}", verdict.met)
        out.append(verdict)

    md5 = [b for b in md5_benches(results) if b["network"] == "model" and b["size"] >= one_gb]
    target = "md5 of a multipart 1 GB frame under the S3 model: at least 0.8x md5's own speed on this machine"
    if md5:
        ok = all(b["of_ceiling"] >= MD5_CEILING_RATIO for b in md5)
        text = "; ".join(
            f"{b['kind']}: {b['of_ceiling']:.2f}x ({b['md5_rate'] / 1e6:,.0f} MB/s streamed vs md5 alone "
            f"{b['ceiling'] / 1e6:,.0f} MB/s; one GET stream {b['plain_rate'] / 1e6:,.0f} MB/s)"
            for b in md5
        )
        out.append(Verdict(target, text, ok))
    else:
        out.append(Verdict(target, "no 1 GB multipart case under the model in this run", None))

    # Peak RSS flat from the smallest to the largest frame, in every mode (network x layout x upload)
    if len(all_sizes) >= 2:
        lo, hi = all_sizes[0], all_sizes[-1]
        growths = []
        for net, kind, upload, size in grid:
            if size != lo:
                continue
            a, b = grid.get((net, kind, upload, lo), {}), grid.get((net, kind, upload, hi), {})
            if "ours" in a and "ours" in b:
                growths.append((b["ours"].rss - a["ours"].rss, f"{net} {kind} {upload}"))
        if growths:
            worst = max(growths)
            out.append(
                Verdict(
                    f"Peak RSS grows by less than 32 MiB from {lo / 1e6:g} MB to {hi / 1e6:g} MB frames, every mode",
                    f"largest growth {worst[0] / MIB:+.1f} MiB ({worst[1]}); "
                    + "; ".join(f"{name}: {g / MIB:+.1f} MiB" for g, name in growths),
                    worst[0] < RSS_GROWTH_LIMIT,
                )
            )

    single = [r for r in results["runs"] if r["system"] == "ours" and r["upload"] == "single"]
    if single:
        worst_read = max(landing_read(r) for r in single)
        worst_written = max(written(r) for r in single)
        out.append(
            Verdict(
                "Single-part FITS, any size: bytes read from landing <= 256 KiB; bytes through the process: zero",
                f"at most {worst_read:,} B read over {len(single)} ingests; at most {worst_written:,} B written",
                worst_read <= READ_LIMIT and worst_written == 0,
            )
        )

    cold = cold_start(results)
    if cold:
        before, after = cold["lazy"], cold["eager"]
        out.append(
            Verdict(
                "First invocation faster with init loading what the first record needs (issue 14)",
                f"first invocation {after['first_invocation_s']:.3f} s after, {before['first_invocation_s']:.3f} s "
                f"before; import + first invocation {after['total_s']:.3f} s after, {before['total_s']:.3f} s before "
                "(without SnapStart the work moves to init; with it, init runs once per published version)",
                after["first_invocation_s"] < before["first_invocation_s"],
            )
        )
    ours_imports = results["imports"].get("ours", [])
    if ours_imports:
        t = median(ours_imports)
        out.append(
            Verdict(
                "Handler import under 1.0 s on this machine (issue 6; with SnapStart, paid once per version)",
                f"median {t:.3f} s over {len(ours_imports)} cold processes",
                t < IMPORT_LIMIT_S,
            )
        )
    bundle = results.get("bundle") or {}
    if bundle.get("bytes"):
        out.append(
            Verdict(
                "Bundle well under 250 MB unzipped",
                f"{bundle['bytes'] / 1e6:.1f} MB ({bundle['bytes'] / BUNDLE_LIMIT:.0%} of Lambda's 250 MiB)",
                bundle["bytes"] < BUNDLE_LIMIT,
            )
        )
    return out


# -- cold start, copy, cost ----------------------------------------------------------------------------


def cold_start(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    found = {}
    for variant, runs in (results.get("cold_starts") or {}).items():
        if runs:
            imp = median(r["import_s"] for r in runs)
            first = median(r["first_invocation_s"] for r in runs)
            found[variant] = {
                "import_s": imp,
                "first_invocation_s": first,
                "total_s": median(r["import_s"] + r["first_invocation_s"] for r in runs),
                "runs": len(runs),
            }
    return found if {"eager", "lazy"} <= set(found) else {}


def copy_threshold(sweep: list[dict[str, Any]]) -> int | None:
    """The smallest swept size from which parallel part copies beat one CopyObject at every larger size."""
    found = None
    for row in sorted(sweep, key=lambda r: r["size"], reverse=True):
        if row["parts"] > 1 and row["parts_s"] < row["copy_object_s"]:
            found = row["size"]
        else:
            break
    return found


def lambda_memory_for(peak_rss: float) -> int:
    """The smallest Lambda memory setting (64 MB steps, 128 MB at least) holding this RSS with 10% spare."""
    need = peak_rss * 1.1 / 1e6
    return max(128, int(math.ceil(need / 64) * 64))


def duration_at(cell: Cell, memory_mb: int) -> float:
    """Duration at another memory size: CPU time is stretched where Lambda gives less than one vCPU."""
    return max(cell.wall, cell.cpu * FULL_VCPU_MB / memory_mb)


def cost_rows(results: dict[str, Any], network: str = "model") -> list[dict[str, Any]]:
    """Per frame: Lambda GB-seconds and USD (arm64) with S3 request charges, both systems.

    A function has one memory setting for every frame: lambda_ingest's as deployed; ocs_ingester's the
    smallest that holds its largest peak RSS in this run (it holds the whole file). Each duration is the
    measured one, stretched where that memory gives less than the vCPU the run had (`duration_at`).
    """
    grid = cells(results)
    base_peak = max((c["baseline"].rss for c in grid.values() if "baseline" in c), default=0.0)
    memory = {"ours": DEPLOYED_MEMORY_MB, "baseline": lambda_memory_for(base_peak)}
    rows = []
    for (net, kind, upload, size), cell in grid.items():
        if net != network or "ours" not in cell or "baseline" not in cell:
            continue
        row: dict[str, Any] = {"kind": kind, "upload": upload, "size": size, "file_size": cell["ours"].file_size}
        for name in ("ours", "baseline"):
            c = cell[name]
            duration = duration_at(c, memory[name])
            gb_s = duration * memory[name] / 1024
            row[name] = {
                "memory_mb": memory[name],
                "duration_s": duration,
                "gb_s": gb_s,
                "lambda_usd": gb_s * LAMBDA_GB_S["arm64"],
                "s3_usd": c.request_cost,
                "requests": c.requests,
            }
        rows.append(row)
    return rows


def memory_choices(results: dict[str, Any], network: str = "model") -> list[dict[str, Any]]:
    """lambda_ingest's estimated duration and cost per frame at several memory sizes, over the run's cases."""
    grid = cells(results)
    ours = [c["ours"] for (net, *_), c in grid.items() if net == network and "ours" in c]
    if not ours:
        return []
    peak = max(c.rss for c in ours)
    out = []
    for memory in MEMORY_CHOICES_MB:
        durations = [duration_at(c, memory) for c in ours]
        costs = [d * memory / 1024 * LAMBDA_GB_S["arm64"] for d in durations]
        out.append(
            {
                "memory_mb": memory,
                "fits": peak * 1.1 / 1e6 <= memory,
                "mean_cost_usd": statistics.fmean(costs),
                "max_duration_s": max(durations),
                "mean_duration_s": statistics.fmean(durations),
            }
        )
    return out


def recommended_memory(choices: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cheapest setting that holds the peak RSS; among those within 10% of it, the fastest."""
    fitting = [c for c in choices if c["fits"]]
    if not fitting:
        return None
    cheapest = min(c["mean_cost_usd"] for c in fitting)
    near = [c for c in fitting if c["mean_cost_usd"] <= cheapest * 1.1]
    return min(near, key=lambda c: c["mean_duration_s"])
