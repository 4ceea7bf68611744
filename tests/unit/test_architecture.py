"""The import graph of lambda_ingest and infra: no circles, and neither imports the package's test doubles.

grimp (import-linter's graph builder) reads every import statement, including those inside functions and
under `if TYPE_CHECKING:`, so a lazy import cannot hide a circle.
"""

from __future__ import annotations

import re
from itertools import combinations
from pathlib import Path

import grimp
import pytest

PACKAGE = "lambda_ingest"
LOCAL = "lambda_ingest.local"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, "infra")


def test_no_module_imports_one_that_imports_it_back(graph) -> None:
    # Given every module of the package, when each pair is checked both ways
    circles = [
        (graph.find_shortest_chain(importer=a, imported=b), graph.find_shortest_chain(importer=b, imported=a))
        for a, b in combinations(sorted(graph.modules), 2)
        if graph.chain_exists(importer=a, imported=b) and graph.chain_exists(importer=b, imported=a)
    ]
    # Then none reaches the other and back: every module depends only downward
    assert circles == []


def test_only_the_local_stack_imports_the_local_stack(graph) -> None:
    # Given the modules outside lambda_ingest/local (what the Lambda asset and a plain install carry, and infra)
    outside = sorted(m for m in graph.modules if m != LOCAL and not m.startswith(LOCAL + "."))
    # Then none imports lambda_ingest.local (the CLI loads the demo by name, behind the `local` extra)
    imports = [(m, i) for m in outside for i in graph.find_modules_directly_imported_by(m) if i.startswith(LOCAL)]
    assert imports == []


ROOT = Path(__file__).resolve().parents[2]


def test_the_architecture_page_lists_the_engine_top_down(graph) -> None:
    # Given the module table of docs/architecture.md, read top to bottom
    page = (ROOT / "docs" / "architecture.md").read_text()
    order = [f"{PACKAGE}.{name}" for name in re.findall(r"^\| `(\w+)\.py` \|", page, flags=re.MULTILINE)]
    assert len(order) > 10
    # Then no module imports one listed above it
    upward = [(m, i) for n, m in enumerate(order) for i in graph.find_modules_directly_imported_by(m) if i in order[:n]]
    assert upward == []


def test_the_readme_layout_names_every_module() -> None:
    # Given README's Layout block and the package's modules
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("```")[1].split("\ninfra/")[0]
    modules = sorted(p.relative_to(ROOT / PACKAGE) for p in (ROOT / PACKAGE).rglob("*.py") if p.name != "__init__.py")
    # Then each is named there (by file name), and nothing named there is missing from the tree
    assert [str(m) for m in modules if m.name not in layout] == []
    named = set(re.findall(r"^\s+(\w+\.py)\b", layout, flags=re.MULTILINE))
    assert sorted(named - {m.name for m in modules}) == []
