"""The fault matrix of docs/reliability.md, built from the tests that prove it.

A test joins the matrix with ``@pytest.mark.fault(case=N, behaviour="...")``.
The table is read from the test sources with ``ast``, so it does not depend
on which tests a run selects. ``python -m tests.fault_cases`` rewrites the
document; tests/test_reliability_doc.py fails while it is out of date.
"""

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC_PATH = REPO / "docs" / "reliability.md"

# Case number -> the fault, as the table's first columns show it.
CASES: dict[int, str] = {
    1: "API down at start: connection refused, host unresolvable, TLS "
    "handshake failure",
    2: "API accepts the connection and never answers",
    3: "429 with Retry-After (seconds or HTTP date); 500, 502, 503; a proxy's "
    "HTML page; truncated or invalid JSON; 201 without agent_token; a huge body",
    4: "Heartbeat 401 (agent revoked) or 404 (agent deleted)",
    5: "HTTPS_PROXY / https_proxy and NO_PROXY",
    6: "Self-hosted Garnet API with a private CA",
    7: "Cleartext http:// API URL to a host other than loopback",
    8: "Token file empty, blank or not text; a leftover temporary file",
    9: "Token file mode wider than 0600; a symbolic link or a folder at the token path",
    10: "State folder read-only; disk full during the write",
    11: "SIGTERM while registering; kill -9 at random points",
    12: "Two daemons on the same state folder",
    13: "Cloned machine: /etc/machine-id differs from the stored identity",
    14: "API URL changed to another Garnet installation",
    15: "Project token rotated while the agent token is valid",
    16: "Config file: syntax error, tab, BOM, CRLF, empty, unreadable, wrong "
    "type, unknown key",
    17: "/etc/default/jibril with quotes, comments, export, CRLF",
    18: "Project token on the command line",
    19: "A known token planted in every source never appears in output, logs or files",
    20: "Arbitrary input to the settings sources and the EnvironmentFile parser",
}

_HEADER = """\
# Reliability

How jibrild behaves when the host, the network or the operator gets
something wrong, and the test that proves each behaviour. The tests run as
part of `make test`: the end-to-end ones start the daemon against the local
Garnet API (`garnet_local/`) with real files and sockets, the others test
one part, such as the backoff or the token store, on its own.

This page is generated from the `@pytest.mark.fault` markers in `tests/`:
run `python -m tests.fault_cases` after changing one.
`tests/test_reliability_doc.py` fails while the page is out of date.

| # | fault | behaviour | proved by |
| --- | --- | --- | --- |
"""


@dataclass(frozen=True)
class FaultTest:
    """One test that proves one behaviour of one case."""

    case: int
    behaviour: str
    test_id: str  # tests/test_x.py::test_name


def collect(tests_folder: Path = REPO / "tests") -> list[FaultTest]:
    """Return every test marked with ``pytest.mark.fault``, by case then id."""
    found = []
    for path in sorted(tests_folder.glob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        relative = path.relative_to(tests_folder.parent).as_posix()
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for decorator in node.decorator_list:
                marker = _fault_arguments(decorator, path)
                if marker is not None:
                    case, behaviour = marker
                    found.append(FaultTest(case, behaviour, f"{relative}::{node.name}"))
    return sorted(found, key=lambda test: (test.case, test.test_id))


def _fault_arguments(decorator: ast.expr, path: Path) -> tuple[int, str] | None:
    """Return (case, behaviour) of a ``pytest.mark.fault(...)`` decorator."""
    if not isinstance(decorator, ast.Call):
        return None
    name = ast.unparse(decorator.func)
    if name != "pytest.mark.fault":
        return None

    keywords = {k.arg: k.value for k in decorator.keywords}
    try:
        case = ast.literal_eval(keywords["case"])
        behaviour = ast.literal_eval(keywords["behaviour"])
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"{path}:{decorator.lineno}: pytest.mark.fault needs literal case= "
            f"and behaviour= arguments ({error})"
        ) from None
    if not isinstance(case, int) or not isinstance(behaviour, str):
        raise ValueError(
            f"{path}:{decorator.lineno}: expected case=<int>, behaviour=<str>"
        )
    return case, " ".join(behaviour.split())


def render(tests: list[FaultTest]) -> str:
    """Return the Markdown page: one row per case, each behaviour with the
    test that proves it."""
    rows = []
    for case, fault in CASES.items():
        proofs = [test for test in tests if test.case == case]
        behaviours = "<br>".join(_cell(test.behaviour) for test in proofs)
        test_ids = "<br>".join(f"`{test.test_id}`" for test in proofs)
        rows.append(f"| {case} | {_cell(fault)} | {behaviours} | {test_ids} |\n")
    return _HEADER + "".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main() -> int:
    """Rewrite docs/reliability.md from the markers."""
    DOC_PATH.write_text(render(collect()))
    print(f"wrote {DOC_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
