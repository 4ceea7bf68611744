"""Package the function without Docker: `lambda_ingest` plus its runtime dependencies, as Lambda runs them.

Two modes (cdk context `bundling`):

- `pip` (default, what `cdk synth`/`cdk deploy` use): pip installs `[project].dependencies` of
  pyproject.toml for the Lambda platform (CPython `LAMBDA_PYTHON_VERSION`, manylinux up to glibc 2.34,
  aarch64, binary wheels only, so nothing is compiled for the wrong machine), pinned to the versions in
  the running virtual environment (the versions the tests ran against). The installed tree is stripped
  (byte code, test suites, console scripts, stubs and C sources) and cached in `.bundle/deps-<key>`,
  the key hashing everything that decides its content; later synths hard-link it in (about a second).
- `source`: only the package (what the CDK assertion tests use: no network, no pip).

boto3/botocore are bundled although the runtime ships a copy: the runtime's copy is whatever AWS last
installed, and the package relies on recent S3 parameters (conditional reads and copies); pinning it keeps
the deployed code on the versions that were tested, for ~25 MB.

The asset hash is computed here (package files + dependency key + mode), so CDK never fingerprints the
repository and an unchanged package reuses the staged asset.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from infra import constants as c
from infra.sizes import tree_size

# Bump when the layout or the strip rules change: it is part of the cache key and the asset hash.
BUNDLER_VERSION = "1"
REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR_NAME = ".bundle"
CACHE_KEEP = 3  # dependency trees kept in .bundle (older ones are removed)

# Directories named like test suites that a library imports at run time (astropy/__init__ imports
# astropy.tests.runner); every other `tests`/`test` directory is dropped.
KEEP_TEST_DIRS = frozenset({"astropy/tests"})
STRIP_DIR_NAMES = frozenset({"__pycache__", "tests", "test"})
STRIP_SUFFIXES = (".pyc", ".pyo", ".pyi", ".pyx", ".pxd", ".c", ".h", ".cpp", ".hpp")
STRIP_TOP_LEVEL = ("bin",)  # console scripts pip writes under --target; nothing runs them in Lambda


class BundlingError(RuntimeError):
    """pip failed, or the bundle broke a limit; the message says which and what pip printed."""


def runtime_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> tuple[str, ...]:
    """`[project].dependencies`: the one list of what the Lambda bundle carries."""
    with pyproject.open("rb") as fh:
        return tuple(tomllib.load(fh)["project"]["dependencies"])


def lambda_platforms(machine: str = c.LAMBDA_MACHINE, glibc: tuple[int, int] = c.LAMBDA_GLIBC) -> tuple[str, ...]:
    # pip does not widen `--platform manylinux_2_34_x` to older manylinux tags, so list them all.
    return (f"manylinux2014_{machine}", *(f"manylinux_2_{minor}_{machine}" for minor in range(17, glibc[1] + 1)))


_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def venv_pins(requirements: Iterable[str]) -> dict[str, str]:
    """`name -> version` for the installed closure of `requirements` (markers ignored: a superset is harmless,
    the pins are only constraints)."""
    pins: dict[str, str] = {}
    todo = [m.group(1) for r in requirements if (m := _REQ_NAME.match(r))]
    while todo:
        name = _normalise(todo.pop())
        if name in pins:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        pins[name] = dist.version
        todo.extend(m.group(1) for r in dist.requires or () if (m := _REQ_NAME.match(r)))
    return dict(sorted(pins.items()))


@dataclass(frozen=True)
class DependencySpec:
    """Everything that decides the content of the dependency tree (and so its cache key)."""

    requirements: tuple[str, ...]
    pins: tuple[tuple[str, str], ...]
    python_version: str = c.LAMBDA_PYTHON_VERSION
    platforms: tuple[str, ...] = lambda_platforms()

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        for part in (BUNDLER_VERSION, self.python_version, *self.platforms, "|", *self.requirements, "|"):
            digest.update(part.encode() + b"\0")
        for name, version in self.pins:
            digest.update(f"{name}=={version}".encode() + b"\0")
        return digest.hexdigest()[:20]


def default_spec(pin_versions: bool = True) -> DependencySpec:
    requirements = runtime_requirements()
    pins = tuple(venv_pins(requirements).items()) if pin_versions else ()
    return DependencySpec(requirements=requirements, pins=pins)


def package_files(package_dir: Path, excludes: Sequence[str] = c.PACKAGE_EXCLUDES) -> list[Path]:
    """The package's files that ship, relative to `package_dir`, in a stable order."""
    files = []
    for path in sorted(package_dir.rglob("*")):
        rel = path.relative_to(package_dir)
        if not path.is_file() or rel.parts[0] in excludes or "__pycache__" in rel.parts:
            continue
        if path.suffix in (".pyc", ".pyo"):
            continue
        files.append(rel)
    return files


def strip_tree(root: Path) -> None:
    """Remove what Lambda never executes; keeps dist-info (importlib.metadata reads it)."""
    for name in STRIP_TOP_LEVEL:
        shutil.rmtree(root / name, ignore_errors=True)
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        here = Path(dirpath)
        for d in list(dirnames):
            rel = (here / d).relative_to(root).as_posix()
            if d in STRIP_DIR_NAMES and rel not in KEEP_TEST_DIRS:
                shutil.rmtree(here / d)
                dirnames.remove(d)
        for f in filenames:
            if f.endswith(STRIP_SUFFIXES):
                (here / f).unlink()


def pip_install(target: Path, spec: DependencySpec) -> None:
    """pip for another machine: the Lambda's CPython and platform, wheels only, pinned, no byte code."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("".join(f"{name}=={version}\n" for name, version in spec.pins))
        constraints = fh.name
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--no-compile",
        "--target",
        str(target),
        "--implementation",
        "cp",
        "--python-version",
        spec.python_version,
        "--only-binary=:all:",
        *(arg for platform in spec.platforms for arg in ("--platform", platform)),
        "--constraint",
        constraints,
        *spec.requirements,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        os.unlink(constraints)
    if proc.returncode != 0:
        raise BundlingError(
            "pip could not install the Lambda dependencies (needs PyPI, and binary wheels for "
            f"cp{spec.python_version.replace('.', '')} {spec.platforms[-1]}); with pinned versions, "
            "`-c bundle_pin_versions=false` lets pip choose.\n"
            f"command: {' '.join(cmd)}\n{proc.stderr[-4000:]}"
        )


def dependency_tree(spec: DependencySpec, cache_root: Path = REPO_ROOT / CACHE_DIR_NAME) -> tuple[Path, bool]:
    """The stripped dependency tree for `spec`, built once and cached; returns (path, was_cached)."""
    cache_root.mkdir(parents=True, exist_ok=True)
    final = cache_root / f"deps-{spec.key}"
    if final.is_dir():
        os.utime(final)  # most recently used, for the pruning below
        return final, True
    building = Path(tempfile.mkdtemp(prefix="building-", dir=cache_root))
    try:
        pip_install(building, spec)
        strip_tree(building)
        try:
            building.rename(final)  # atomic: a concurrent synth either sees the whole tree or none
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    _prune(cache_root, keep=final)
    return final, False


def _prune(cache_root: Path, keep: Path) -> None:
    trees = sorted(cache_root.glob("deps-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [t for t in trees if t != keep][CACHE_KEEP - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    # Hard links make a cached 100+ MB tree appear in the output in about a second.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def copy_package(package_dir: Path, dest: Path) -> None:
    for rel in package_files(package_dir):
        target = dest / package_dir.name / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package_dir / rel, target)


@jsii.implements(ILocalBundling)
class LocalBundler:
    """CDK's local bundling hook: fills `output_dir` in-process, so Docker is never needed."""

    def __init__(self, package_dir: Path, spec: DependencySpec | None, cache_root: Path) -> None:
        self.package_dir = package_dir
        self.spec = spec  # None: source mode (package only)
        self.cache_root = cache_root

    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        out = Path(output_dir)
        cached = None
        if self.spec is not None:
            deps, cached = dependency_tree(self.spec, self.cache_root)
            shutil.copytree(deps, out, copy_function=_link_or_copy, dirs_exist_ok=True)
        copy_package(self.package_dir, out)
        size, files = tree_size(out)
        mode = "source" if self.spec is None else ("pip, cached" if cached else "pip, built")
        print(
            f"[lambda_ingest bundle] {size / 1e6:.1f} MB unzipped, {files} files ({mode})",
            file=sys.stderr,
        )
        if size >= c.LAMBDA_UNZIPPED_LIMIT_BYTES:
            raise BundlingError(f"the bundle is {size / 1e6:.1f} MB unzipped, over Lambda's 250 MB")
        return True


def asset_hash(package_dir: Path, spec: DependencySpec | None) -> str:
    digest = hashlib.sha256(f"{BUNDLER_VERSION}|{spec.key if spec else 'source'}".encode())
    for rel in package_files(package_dir):
        digest.update(rel.as_posix().encode() + b"\0")
        digest.update((package_dir / rel).read_bytes())
    return digest.hexdigest()


def lambda_code(
    mode: str,
    *,
    pin_versions: bool = True,
    package_dir: Path = REPO_ROOT / c.PACKAGE_NAME,
    cache_root: Path = REPO_ROOT / CACHE_DIR_NAME,
) -> lambda_.Code:
    """The function's code asset for `mode` ('pip' or 'source')."""
    if not (package_dir / "__init__.py").is_file():
        raise BundlingError(f"{package_dir} is not a Python package")
    spec = default_spec(pin_versions) if mode == "pip" else None
    return lambda_.Code.from_asset(
        str(package_dir),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=asset_hash(package_dir, spec),
        bundling=BundlingOptions(
            # Required by the API but never used: LocalBundler always succeeds or raises.
            image=DockerImage.from_registry("unused-local-bundling-only"),
            local=LocalBundler(package_dir, spec, cache_root),
        ),
    )
