"""`python -m bench.run`: lambda_ingest against ocs_ingester 3.2.0, side by side, in one run.

One local S3 (moto's threaded server on loopback, 32-character version ids, ranged reads in proportion to
the range), the same S3 behind the S3 model (bench.model) on a second port, and one Science Archive emulator
live in this process and serve both systems. For every network (loopback, model), frame size, layout
(.fits, .fits.fz) and upload mode (single PUT, multipart), each repeat uploads a distinct synthetic LCO frame
per system, empties the archive, and ingests it in a fresh child process (bench.worker): this project's
handler on the object's S3 notification, or download + ocs_ingester's upload_file_and_ingest_to_archive.
The parent checks that the frame was registered with the right md5 and a real archive version, then deletes
every object so the server's memory stays bounded. Before the cases: cold imports, cold starts with init as
shipped and as before issue 14, and the copy sweep (CopyObject against parallel UploadPartCopy under the
model); after them, end-to-end bursts through SQS (bench.e2e).

    python -m bench.run                      # everything: ~10MB,100MB,1GB x both networks, bursts; docs/
    python -m bench.run --quick              # minutes: 1MB,10MB x both networks, small bursts; bench/results/
    python -m bench.run --networks model --sizes 10MB,1GB --e2e 0x1MB --doc /tmp/b.md --plot /tmp/b.png
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
REGION = "us-east-1"
LANDING = "bench-landing"
ARCHIVE = "bench-archive"
IDEMPOTENCY_TABLE = "bench-idempotency"
PROBE = "bench-probe"  # copies made to time moto's own CopyObject (never ingested)
KINDS = (".fits", ".fits.fz")
UPLOADS = ("single", "multipart")
SYSTEMS = ("ours", "baseline")
NETWORKS = ("loopback", "model")  # moto as it answers on loopback; the same behind bench.model.S3Model
WARM_SIZE = 64 * 1024  # data bytes of the warm-up frame
WORKER_TIMEOUT = 1800  # seconds; a stuck child must not hang the run

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def _rss_mib() -> float:
    """This process's RSS: the S3 server holds every object, so it shows whether cleanup keeps up."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 10MB, 1GB, 64MiB)")
    return int(float(m[1]) * _UNITS[(m[2] or "").upper()])


def size_label(n: int) -> str:
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class Case:
    size: int  # nominal data size asked of the generator
    kind: str  # ".fits" or ".fits.fz"
    upload: str  # "single" or "multipart"
    network: str = "loopback"  # "loopback" or "model"

    @property
    def label(self) -> str:
        return f"{size_label(self.size)} {self.kind} {self.upload} {self.network}"


@dataclass
class Frame:
    path: Path
    key: str
    basename: str
    size: int
    md5: str = ""
    etag: str = ""


def child_environment(endpoint: str, api_root: str, token: str, system: str) -> dict[str, str]:
    """The environment of a deployed function of either system, pointed at the local stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "MOTO_"))}
    env.update(
        {
            "API_ROOT": api_root,
            "AUTH_TOKEN": token,
            "BUCKET": ARCHIVE,
            "S3_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PYTHONPATH": str(REPO),
        }
    )
    if system == "ours":
        env.update(
            {
                # As deployed (infra/): idempotency table on; X-Ray off (no daemon here).
                "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
                "AWS_ENDPOINT_URL": endpoint,  # DynamoDB (S3 uses S3_ENDPOINT_URL)
                "POWERTOOLS_SERVICE_NAME": "lambda_ingest",
                "POWERTOOLS_METRICS_NAMESPACE": "LambdaIngest",
                "POWERTOOLS_TRACE_DISABLED": "1",
            }
        )
    else:
        env.update(
            {
                "FILESTORE_TYPE": "s3",
                "S3_ADDRESSING_STYLE": "path",
                "OPENTSDB_PYTHON_METRICS_TEST_MODE": "1",
            }
        )
    return env


class Bench:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.work = Path(tempfile.mkdtemp(prefix="lambda-ingest-bench-"))
        self.seq = 0
        self.server: Any = None
        self.modeled: Any = None  # the same moto backend behind the S3 model, on its own port
        self.archive: Any = None
        self.s3: Any = None
        self.dynamodb: Any = None
        self.token = secrets.token_hex(20)
        self.done = 0
        self.probed: set[int] = set()
        self.total = 0
        self.started = time.monotonic()

    # -- the shared local stack ----------------------------------------------------------------------

    def start(self) -> None:
        # moto spools objects above ~5 MB to disk files; in memory, its reads are memcpy, not disk I/O
        # (objects are deleted after every ingest, so at most a few copies of one frame are held).
        os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(16 * 1024**3)
        import boto3
        from botocore.config import Config

        from bench.model import S3Model
        from lambda_ingest.local import archive_emulator
        from lambda_ingest.local.archive_emulator import ArchiveEmulator
        from lambda_ingest.local.s3 import LocalS3Server

        self.server = LocalS3Server().start()
        self.modeled = LocalS3Server(middleware=S3Model()).start()
        # The parent's own uploads skip the streaming CRC trailer, which moto decodes at a few MB/s.
        config = Config(request_checksum_calculation="when_required", max_pool_connections=20)
        session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=REGION)
        self.s3 = session.client("s3", endpoint_url=self.server.endpoint_url, config=config)
        self.dynamodb = session.client("dynamodb", endpoint_url=self.server.endpoint_url)
        self.create_resources()
        # Answer with TCP_NODELAY, as nginx in front of the archive does: the emulator writes headers and body
        # apart, so on a kept-alive connection (lambda_ingest's session) Nagle's algorithm and the client's
        # delayed ACK stall every response by ~40 ms; ocs_ingester opens a connection per call and escapes it.
        # (Newer emulators set it themselves; setting it twice is harmless.)
        handler_class = getattr(archive_emulator, "_Handler", None)
        if handler_class is not None:
            handler_class.disable_nagle_algorithm = True
        self.archive = ArchiveEmulator(admin_token=self.token, s3_client=self.s3, bucket=ARCHIVE).start()

    def stop(self) -> None:
        if self.archive is not None:
            self.archive.stop()
        for server in (self.modeled, self.server):
            if server is not None:
                server.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def reset_archive(self) -> None:
        """An empty archive before every ingest (a restart reopens an empty in-memory database).

        Needed for the baseline: ocs_ingester asks `versions/?md5=`, which the archive answers with every
        version (docs/science-archive-api.md), so with any frame registered it skips the upload. Done for
        both systems so they face the same archive.
        """
        self.archive.stop()
        self.archive.start()

    def create_resources(self) -> None:
        self.s3.create_bucket(Bucket=LANDING)
        self.s3.create_bucket(Bucket=ARCHIVE)
        self.s3.put_bucket_versioning(Bucket=ARCHIVE, VersioningConfiguration={"Status": "Enabled"})
        self.dynamodb.create_table(
            TableName=IDEMPOTENCY_TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

    def clean_buckets(self) -> None:
        """Forget every object: moto's reset, as deleting a version leaves its bytes referenced in moto."""
        self.server.reset()
        self.create_resources()

    # -- frames --------------------------------------------------------------------------------------

    def make_frame(self, case: Case) -> Frame:
        from lambda_ingest.local import synthetic

        self.seq += 1  # a distinct basename and distinct bytes (seed) for every ingest
        basename = synthetic.frame_name(seq=self.seq, ext="")
        path = self.work / f"{basename}{case.kind}"
        size = synthetic.write_frame(path, basename=basename, extension=case.kind, data_bytes=case.size, seed=self.seq)
        return Frame(path=path, key=f"raw/{basename}{case.kind}", basename=basename, size=size)

    def upload(self, frame: Frame, multipart: bool) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        if not multipart:
            with frame.path.open("rb") as fh:
                etag = self.s3.put_object(Bucket=LANDING, Key=frame.key, Body=fh)["ETag"].strip('"')
            frame.md5 = frame.etag = etag  # a single PUT's ETag is the md5
            return
        upload_id = self.s3.create_multipart_upload(Bucket=LANDING, Key=frame.key)["UploadId"]
        parts = []
        with frame.path.open("rb") as fh:
            for number, chunk in enumerate(iter(lambda: fh.read(self.opts.part_size), b""), 1):
                digest.update(chunk)
                etag = self.s3.upload_part(
                    Bucket=LANDING, Key=frame.key, UploadId=upload_id, PartNumber=number, Body=chunk
                )["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
        done = self.s3.complete_multipart_upload(
            Bucket=LANDING, Key=frame.key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        frame.md5, frame.etag = digest.hexdigest(), done["ETag"].strip('"')
        if "-" not in frame.etag:
            raise RuntimeError(f"multipart upload of {frame.key} has a plain ETag {frame.etag}")

    # -- children ------------------------------------------------------------------------------------

    def endpoint(self, network: str) -> str:
        return str((self.modeled if network == "model" else self.server).endpoint_url)

    def worker(
        self,
        mode: str,
        system: str,
        *args: str,
        between: Callable[[], None] | None = None,
        network: str = "loopback",
    ) -> dict[str, Any]:
        """Run one child; with `between`, call it when the child reports its warm-up done, then let it go on."""
        out = self.work / f"result-{self.seq}-{mode}-{system}.json"
        log = self.work / f"log-{self.seq}-{mode}-{system}.txt"
        env = child_environment(self.endpoint(network), self.archive.api_root, self.token, system)
        cmd = [sys.executable, "-m", "bench.worker", mode, *args, "--out", str(out)]
        start = time.perf_counter()
        notify_r, notify_w = os.pipe()
        if between is not None:
            cmd += ["--notify-fd", str(notify_w)]
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                cmd, env=env, cwd=REPO, stdin=subprocess.PIPE, stdout=fh, stderr=subprocess.STDOUT, pass_fds=(notify_w,)
            )
            os.close(notify_w)  # only the child holds the write end: EOF if it dies before the handshake
            assert proc.stdin is not None
            try:
                with os.fdopen(notify_r, "rb") as notify:
                    ready, _, _ = select.select([notify], [], [], WORKER_TIMEOUT)
                    if between is not None and ready and notify.readline() == b"warm\n":
                        between()
                        proc.stdin.write(b"go\n")
                proc.stdin.close()
                proc.wait(timeout=WORKER_TIMEOUT)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        elapsed = time.perf_counter() - start
        result = json.loads(out.read_text()) if out.exists() else {"ok": False, "error": "no result written"}
        if proc.returncode != 0 or not result.get("ok"):
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker {mode} {system} failed: {result.get('error')}\n{tail}")
        out.unlink()
        log.unlink()
        result["process_s"] = elapsed
        return result

    def ingest(self, case: Case, system: str, repeat: int, md5_check: bool) -> dict[str, Any]:
        multipart = case.upload == "multipart"
        frame = self.make_frame(case)
        # The child's first invocation runs on a small frame of the same layout (its cold start).
        warm = self.make_frame(Case(WARM_SIZE, case.kind, "single"))
        for f, mp in ((frame, multipart), (warm, False)):
            try:
                self.upload(f, mp)
            finally:
                f.path.unlink(missing_ok=True)
        md5_result = None
        if md5_check:
            md5_result = self.worker(
                "md5", "ours", "--bucket", LANDING, "--key", frame.key, "--rounds", str(self.md5_rounds(case.size)),
                "--expect-md5", frame.md5, network=case.network,
            )  # fmt: skip
        probe = None
        if self.opts.probe and case.upload == "single" and case.network == "loopback" and case.size not in self.probed:
            self.probed.add(case.size)
            probe = self.probe(frame)
        self.reset_archive()
        load = os.getloadavg()[0]

        def after_warm_up() -> None:
            self.reset_archive()
            self.s3.delete_object(Bucket=LANDING, Key=warm.key)
            for version in self.s3.list_object_versions(Bucket=ARCHIVE).get("Versions", []):
                self.s3.delete_object(Bucket=ARCHIVE, Key=version["Key"], VersionId=version["VersionId"])

        args = ["--bucket", LANDING, "--key", frame.key, "--size", str(frame.size), "--etag", frame.etag]
        args += ["--warm-key", warm.key, "--warm-size", str(warm.size), "--warm-etag", warm.etag]
        result = self.worker(
            system, system, *args, *(["--multipart"] if multipart else []), between=after_warm_up, network=case.network
        )
        self.verify(frame, system, result)
        self.clean_buckets()
        self.done += 1
        landing_read = result["traffic"]["received"].get(LANDING, 0)
        self.progress(
            f"{case.label:<28} r{repeat} {system:<8} {result['wall_s']:8.3f} s  "
            f"peak RSS {result['peak_rss_bytes'] / 2**20:7.1f} MiB  landing read {landing_read:>12,} B"
        )
        run = {
            **asdict(case),
            "system": system,
            "repeat": repeat,
            "file_size": frame.size,
            "key": frame.key,
            "load_before": load,
            **{k: v for k, v in result.items() if k != "ok"},
        }
        if md5_result is not None:
            md5_result["file_size"] = md5_result["size"]  # the object's bytes; "size" becomes the nominal size
            md5_result.update(asdict(case))
            run["md5_bench"] = md5_result
        if probe is not None:
            run["probe"] = probe
        return run

    def probe(self, frame: Frame) -> dict[str, float]:
        """What moto itself spends on the requests an ingest makes, for an object of this size.

        Timed from this process with its own client: the S3 server's share of the ingests' wall time, which
        real S3 does not spend the same way (a ranged GET there costs the range, a listing no object bytes).
        """
        self.s3.create_bucket(Bucket=PROBE)
        self.s3.put_bucket_versioning(Bucket=PROBE, VersioningConfiguration={"Status": "Enabled"})
        ops: dict[str, Callable[[], Any]] = {
            "HEAD": lambda: self.s3.head_object(Bucket=LANDING, Key=frame.key),
            "ranged GET 100 KiB": lambda: self.s3.get_object(
                Bucket=LANDING, Key=frame.key, Range=f"bytes=0-{36 * 2880 - 1}"
            )["Body"].read(),
            "CopyObject": lambda: self.s3.copy_object(
                Bucket=PROBE, Key=frame.key, CopySource={"Bucket": LANDING, "Key": frame.key}
            ),
            "ListObjectVersions": lambda: self.s3.list_object_versions(Bucket=PROBE, Prefix=frame.key),
        }
        timings: dict[str, float] = {}
        for name, op in ops.items():
            times = []
            for _ in range(1 if name == "CopyObject" else 3):
                start = time.perf_counter()
                op()
                times.append(time.perf_counter() - start)
            timings[name] = statistics.median(times)
        return timings

    def verify(self, frame: Frame, system: str, result: dict[str, Any]) -> None:
        """The frame is registered once, with the file's md5 and a real archive object version."""
        frames = [f for f in self.archive.frames() if f["basename"] == frame.basename]
        if len(frames) != 1 or len(frames[0]["version_set"]) != 1:
            raise RuntimeError(f"{system}: {frame.basename} not registered exactly once: {frames!r}")
        version = frames[0]["version_set"][0]
        if version["md5"] != frame.md5 or version["key"] != result.get("version_id"):
            raise RuntimeError(f"{system}: registered {version!r}, expected md5 {frame.md5}")
        stored = self.s3.list_object_versions(Bucket=ARCHIVE).get("Versions", [])
        if [v["VersionId"] for v in stored] != [version["key"]]:
            raise RuntimeError(f"{system}: archive bucket holds {stored!r}, registered {version['key']}")

    def progress(self, text: str) -> None:
        minutes = (time.monotonic() - self.started) / 60
        rss = _rss_mib()
        print(
            f"[{self.done:>3}/{self.total}] {minutes:5.1f} min  {text}  (S3 server {rss:.0f} MiB)",
            file=sys.stderr,
            flush=True,
        )

    # -- the whole run -------------------------------------------------------------------------------

    def cold_imports(self) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for target in (*SYSTEMS, "ours-lazy"):
            times = []
            for i in range(self.opts.import_runs + 1):
                result = self.worker("import", "ours" if target != "baseline" else target, "--target", target)
                if i:  # the first run warms the page cache and writes byte code; it is not counted
                    times.append(result["import_s"])
            found[target] = times
        return found

    def cold_starts(self) -> dict[str, list[dict[str, float]]]:
        """Import + first invocation of a fresh process, with init loading what the first record needs
        ("eager", as shipped) and without ("lazy", before issue 14): the cold start before and after."""
        found: dict[str, list[dict[str, float]]] = {"eager": [], "lazy": []}
        for i in range(self.opts.coldstart_runs):
            for variant in ("eager", "lazy") if i % 2 == 0 else ("lazy", "eager"):
                frame = self.make_frame(Case(WARM_SIZE, ".fits.fz", "single"))
                warm = self.make_frame(Case(WARM_SIZE, ".fits.fz", "single"))
                for f in (frame, warm):
                    self.upload(f, False)
                    f.path.unlink(missing_ok=True)
                self.reset_archive()
                args = ["--bucket", LANDING, "--key", frame.key, "--size", str(frame.size), "--etag", frame.etag]
                args += ["--warm-key", warm.key, "--warm-size", str(warm.size), "--warm-etag", warm.etag]
                result = self.worker("ours", "ours", *args, *(["--lazy-init"] if variant == "lazy" else []))
                found[variant].append({k: result[k] for k in ("import_s", "first_invocation_s")})
                self.clean_buckets()
            self.progress(f"cold start run {i + 1}: " + ", ".join(f"{k} {v[-1]}" for k, v in found.items()))
        return found

    def copy_sweep(self) -> list[dict[str, Any]]:
        """Server-side copy under the S3 model: one CopyObject against parallel UploadPartCopy, by size."""
        rows = []
        for size in self.opts.copy_sizes:
            key = f"copy-sweep/{size}.bin"
            self.s3.put_object(Bucket=LANDING, Key=key, Body=os.urandom(size))
            rounds = "1" if size >= 256 * 2**20 else "2"  # the modelled CopyObject of 1 GiB alone takes ~18 s
            result = self.worker("copy", "ours", "--bucket", LANDING, "--key", key, "--rounds", rounds, network="model")
            rows.append({"size": size, **{k: v for k, v in result.items() if k != "ok"}})
            self.clean_buckets()
            self.progress(
                f"copy sweep {size_label(size)}: CopyObject {result['copy_object_s']:.3f} s, "
                f"{result['parts']} parts {result['parts_s']:.3f} s"
            )
        return rows

    def run(self) -> dict[str, Any]:
        from bench import e2e, facts

        opts = self.opts
        cases = [
            Case(size, kind, upload, network)
            for network in opts.networks
            for size in opts.sizes
            for kind in opts.kinds
            for upload in opts.uploads
        ]
        self.total = sum(len(opts.systems) * self.repeats_for(c.size) for c in cases)
        began = datetime.now(UTC)
        self.start()
        try:
            imports = self.cold_imports()
            self.progress(
                "cold import (median): "
                + ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in imports.items() if v)
            )
            cold_starts = self.cold_starts()
            # Bursts first, while this process (which holds every object of the local S3) is fresh: a 20 x
            # 1 GB burst after the single-frame cases met a heap fragmented by them and was OOM-killed.
            bursts = [e2e.burst(self, count, size, opts.e2e_workers) for count, size in opts.e2e if count]
            copy_sweep = self.copy_sweep() if "model" in opts.networks else []
            runs = []
            for case in cases:
                for repeat in range(self.repeats_for(case.size)):
                    # Alternate which system goes first, so drift in the server's state favours neither.
                    order = opts.systems if repeat % 2 == 0 else tuple(reversed(opts.systems))
                    for system in order:
                        md5_check = case.upload == "multipart" and repeat == 0 and system == "ours"
                        runs.append(self.ingest(case, system, repeat, md5_check))
        finally:
            self.stop()
        elapsed = time.monotonic() - self.started
        from bench.model import S3Model

        return {
            "date": began.isoformat(timespec="seconds"),
            "elapsed_s": elapsed,
            "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
            "config": {
                "sizes": opts.sizes,
                "kinds": opts.kinds,
                "uploads": opts.uploads,
                "systems": opts.systems,
                "networks": opts.networks,
                "repeats": opts.repeats,
                "large_repeats": opts.large_repeats,
                "large_size": opts.large_size,
                "part_size": opts.part_size,
                "md5_rounds": opts.md5_rounds,
                "import_runs": opts.import_runs,
                "coldstart_runs": opts.coldstart_runs,
                "copy_sizes": opts.copy_sizes,
                "e2e": opts.e2e,
                "e2e_workers": opts.e2e_workers,
                "quick": opts.quick,
            },
            "model": S3Model().describe(),
            "settings": _function_settings(),
            "machine": facts.machine(),
            "versions": facts.versions(),
            "commit": facts.commit(),
            "bundle": facts.bundle(build=opts.build_bundle),
            "imports": imports,
            "cold_starts": cold_starts,
            "copy_sweep": copy_sweep,
            "bursts": bursts,
            "runs": runs,
        }

    def md5_rounds(self, size: int) -> int:
        # Small objects read in milliseconds, where noise from the shared machine weighs most: more rounds.
        return self.opts.md5_rounds if size >= self.opts.large_size else max(self.opts.md5_rounds, 5)

    def repeats_for(self, size: int) -> int:
        return self.opts.large_repeats if size >= self.opts.large_size else self.opts.repeats


def _function_settings() -> dict[str, Any]:
    """The function's copy and md5 constants and settings, as the children run them (the bench sets none)."""
    from lambda_ingest import store
    from lambda_ingest.settings import Settings

    return {
        "copy_multipart_threshold": store.COPY_MULTIPART_THRESHOLD,
        "copy_part_size": store.COPY_PART_SIZE,
        "copy_concurrency": Settings.copy_concurrency,
        "md5_chunk_size": store.MD5_CHUNK_SIZE,
        "md5_connections": store.MD5_CONNECTIONS,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )

    def sizes(text: str) -> list[int]:
        return sorted({parse_size(s) for s in text.split(",") if s.strip()})

    def choices(allowed: tuple[str, ...]) -> Any:
        def parse(text: str) -> tuple[str, ...]:
            picked = tuple(s.strip() for s in text.split(",") if s.strip())
            bad = [s for s in picked if s not in allowed]
            if bad or not picked:
                raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}")
            return picked

        return parse

    parser.add_argument("--sizes", type=sizes, default=None, help="frame sizes (default 10MB,100MB,1GB)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="ingests per case and system below --large-size (default 5)"
    )
    parser.add_argument("--large-repeats", type=int, default=None, help="repeats at and above --large-size (default 3)")
    parser.add_argument("--large-size", type=parse_size, default=parse_size("1GB"))
    parser.add_argument("--kinds", type=choices(KINDS), default=KINDS, help="frame layouts (default .fits,.fits.fz)")
    parser.add_argument("--uploads", type=choices(UPLOADS), default=UPLOADS, help="single,multipart (default both)")
    parser.add_argument("--systems", type=choices(SYSTEMS), default=SYSTEMS, help="ours,baseline (default both)")
    parser.add_argument(
        "--networks", type=choices(NETWORKS), default=NETWORKS, help="loopback,model (default both; see bench/model.py)"
    )
    parser.add_argument("--coldstart-runs", type=int, default=None, help="cold starts before/after (default 5)")
    parser.add_argument(
        "--copy-sizes", type=sizes, default=None, help="copy sweep under the model (default 8MiB..1GiB, doubling)"
    )

    def bursts(text: str) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        for item in filter(None, text.split(",")):  # "" or "none": no bursts
            if item.strip() == "none":
                continue
            count, _, size = item.strip().partition("x")
            found.append((int(count), parse_size(size)))
        return found

    parser.add_argument(
        "--e2e",
        type=bursts,
        default=None,
        help="bursts COUNTxSIZE, end-to-end latency (default 1000x1MB,20x1GB)",
    )
    parser.add_argument("--e2e-workers", type=int, default=8, help="concurrent function instances in the bursts")
    parser.add_argument("--part-size", type=parse_size, default=parse_size("8MiB"), help="multipart part size")
    parser.add_argument("--md5-rounds", type=int, default=None, help="md5 vs plain read rounds (default 5)")
    parser.add_argument("--import-runs", type=int, default=None, help="cold import runs (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1MB,10MB, both networks, 1 repeat, output in bench/results"
    )
    parser.add_argument("--doc", type=Path, default=None, help="markdown output (default docs/benchmarks.md)")
    parser.add_argument("--plot", type=Path, default=None, help="PNG output (default docs/benchmarks.png)")
    parser.add_argument("--json", type=Path, default=None, help="raw results (default bench/results/<date>.json)")
    parser.add_argument(
        "--no-probe", dest="probe", action="store_false", help="skip timing moto's own per-request costs"
    )
    parser.add_argument("--build-bundle", action="store_true", help="measure a freshly pip-built bundle")
    opts = parser.parse_args(argv)
    quick = opts.quick
    opts.sizes = opts.sizes or ([parse_size("1MB"), parse_size("10MB")] if quick else [10**7, 10**8, 10**9])
    opts.coldstart_runs = opts.coldstart_runs or (1 if quick else 5)
    opts.copy_sizes = opts.copy_sizes or [
        2**20 * n for n in ((8, 16, 32) if quick else (8, 16, 32, 64, 128, 256, 512, 1024))
    ]
    default_bursts = [(20, 10**6), (2, 32 * 10**6)] if quick else [(1000, 10**6), (20, 10**9)]
    opts.e2e = opts.e2e if opts.e2e is not None else default_bursts
    # Small frames take a tenth of a second, where the shared machine's noise weighs most: more repeats.
    opts.repeats = opts.repeats or (1 if quick else 5)
    opts.large_repeats = opts.large_repeats or (1 if quick else 3)
    opts.md5_rounds = opts.md5_rounds or (1 if quick else 5)  # the shared machine is noisy: medians of 5
    opts.import_runs = opts.import_runs or (2 if quick else 5)
    out_dir = RESULTS if quick else REPO / "docs"
    opts.doc = opts.doc or out_dir / ("benchmarks-quick.md" if quick else "benchmarks.md")
    opts.plot = opts.plot or out_dir / ("benchmarks-quick.png" if quick else "benchmarks.png")
    return opts


def _large_allocations_returned() -> None:
    """Give every allocation of 1 MiB or more back to the system when freed (glibc, Linux).

    This process holds the local S3's objects: request bodies, parts and frames of 8 MiB to 1 GB come and
    go. glibc raises its mmap threshold after each large free (up to 32 MiB), so such buffers then come from
    the heap, which fragments and is not returned: the process grew to 10 GB over the single-frame cases.
    A fixed threshold turns that adjustment off.
    """
    import ctypes
    from contextlib import suppress

    m_mmap_threshold = -3
    with suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL(None).mallopt(m_mmap_threshold, 1024 * 1024)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    from bench import report

    _large_allocations_returned()
    results = Bench(opts).run()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = results["date"].replace(":", "").replace("-", "")[:15]
    path = opts.json or RESULTS / f"{'quick-' if opts.quick else ''}{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    (RESULTS / ("latest-quick.json" if opts.quick else "latest.json")).write_text(json.dumps(results, indent=1))
    report.write(results, doc=opts.doc, plot_path=opts.plot)
    print(f"results: {path}\ndoc: {opts.doc}\nplot: {opts.plot}", file=sys.stderr)
    print(f"total {results['elapsed_s'] / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
