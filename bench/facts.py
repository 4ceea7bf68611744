"""What the benchmark ran on: machine, versions, commit, and the size of the deployed bundle."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from infra.sizes import tree_size  # the same measure the CDK bundler prints and checks

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "lambda_ingest"
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024  # Lambda's limit on function + layers, unzipped
DISTRIBUTIONS = (
    "lambda-ingest",
    "ocs-ingester",
    "ocs-archive",
    "astropy",
    "numpy",
    "boto3",
    "botocore",
    "moto",
    "werkzeug",
    "cheroot",
    "aws-lambda-powertools",
    "requests",
)


def machine() -> dict[str, Any]:
    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    return {
        "cpu": cpu or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "memory_bytes": mem_kib * 1024,
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
    }


def _os_name() -> str:
    try:
        info = platform.freedesktop_os_release()
    except OSError:
        return platform.system()
    return info.get("PRETTY_NAME", platform.system())


def versions() -> dict[str, str]:
    found = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "lambda_ingest"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}{' (lambda_ingest/ modified)' if dirty else ''}"


def _package_size() -> tuple[int, int]:
    # What infra/bundling.py ships of the package: everything but local/ and byte code.
    total = files = 0
    for path in PACKAGE.rglob("*"):
        rel = path.relative_to(PACKAGE)
        if path.is_file() and rel.parts[0] != "local" and "__pycache__" not in rel.parts:
            total += path.stat().st_size
            files += 1
    return total, files


def bundle(build: bool = False) -> dict[str, Any]:
    """The unzipped size of the function bundle, from the newest staged asset, else the bundler's cache.

    With neither (or build=True), one is built with pip for the Lambda platform, as the guidance of
    infra/bundling.py does (needs PyPI).
    """
    if not build:
        assets = [p.parent.parent for p in REPO.glob("cdk.out/asset.*/lambda_ingest/handler.py")]
        if assets:
            newest = max(assets, key=lambda p: p.stat().st_mtime)
            size, files = tree_size(newest)
            return {"bytes": size, "files": files, "source": f"CDK asset {newest.relative_to(REPO)} (cdk synth)"}
        caches = sorted(REPO.glob(".bundle/deps-*"), key=lambda p: p.stat().st_mtime)
        if caches:
            deps, deps_files = tree_size(caches[-1])
            pkg, pkg_files = _package_size()
            return {
                "bytes": deps + pkg,
                "files": deps_files + pkg_files,
                "source": f"{caches[-1].relative_to(REPO)} (infra/bundling.py cache) + lambda_ingest/",
            }
    return _built_bundle()


def _built_bundle() -> dict[str, Any]:
    target = Path(tempfile.mkdtemp(prefix="lambda-ingest-bundle-"))
    try:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--platform",
            "manylinux2014_aarch64",
            "--implementation",
            "cp",
            "--python-version",
            "3.12",
            "--only-binary=:all:",
            "--target",
            str(target),
            "boto3",
            "requests",
            "astropy",
            "ocs-archive>=0.5,<0.6",
            "aws-lambda-powertools[tracer]",
        ]
        subprocess.run(cmd, check=True, capture_output=True)
        shutil.copytree(PACKAGE, target / "lambda_ingest", ignore=shutil.ignore_patterns("local", "__pycache__"))
        size, files = tree_size(target)
        return {"bytes": size, "files": files, "source": "built by bench (pip, manylinux2014_aarch64, cp3.12)"}
    finally:
        shutil.rmtree(target, ignore_errors=True)
