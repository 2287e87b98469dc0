"""docs/reliability.md against the fault markers of the test suite."""

from pathlib import Path

import pytest

from tests.fault_cases import CASES, DOC_PATH, collect, render


def test_reliability_doc_up_to_date() -> None:
    """The page matches the markers; run `python -m tests.fault_cases`."""
    expected = render(collect())

    assert expected == DOC_PATH.read_text(), (
        "docs/reliability.md is out of date: run `python -m tests.fault_cases`"
    )


def test_every_case_has_a_test() -> None:
    """Each case of the matrix is proved by at least one marked test."""
    covered = {test.case for test in collect()}

    assert [] == sorted(set(CASES) - covered)


def test_markers_name_known_cases() -> None:
    """No marker names a case the matrix does not have."""
    unknown = [test.test_id for test in collect() if test.case not in CASES]

    assert [] == unknown


def test_marker_without_behaviour_rejected(tmp_path: Path) -> None:
    """A marker that the table cannot render fails with file and line."""
    source = tmp_path / "test_sample.py"
    source.write_text(
        "import pytest\n\n@pytest.mark.fault(case=1)\ndef test_x():\n    pass\n"
    )

    with pytest.raises(ValueError, match=r"test_sample\.py:3: pytest\.mark\.fault"):
        collect(tmp_path)
