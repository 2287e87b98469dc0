"""Values shared by the harness's fixtures and tests. The tests import
them from here, not from conftest.py, which pytest loads under a module
name of its own."""

PROJECT_TOKEN = "harness-project-token"
CREDENTIAL_PROJECT_TOKEN = "harness-credential-token"

# Lines printed at the end of the run, by name (see conftest.py).
REPORT: dict[str, str] = {}
