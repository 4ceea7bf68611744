"""The import graph of lambda_ingest: no circles, and the package never imports its test doubles.

grimp (import-linter's graph builder) reads every import statement, including those inside functions and
under `if TYPE_CHECKING:`, so a lazy import cannot hide a circle.
"""

from __future__ import annotations

from itertools import combinations

import grimp
import pytest

PACKAGE = "lambda_ingest"
LOCAL = "lambda_ingest.local"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE)


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
    # Given the modules outside lambda_ingest/local (what the Lambda asset and a plain install carry)
    outside = sorted(m for m in graph.modules if m != LOCAL and not m.startswith(LOCAL + "."))
    # Then none imports lambda_ingest.local (the CLI loads the demo by name, behind the `local` extra)
    imports = [(m, i) for m in outside for i in graph.find_modules_directly_imported_by(m) if i.startswith(LOCAL)]
    assert imports == []
