"""Print the package's copyright file: the project's own terms, then one
paragraph for each Python distribution bundled in /usr/lib/jibril, with the
license its metadata declares.

    python3 copyright.py HEADER LIB_DIR
"""

import sys
from email.parser import Parser
from pathlib import Path

CLASSIFIER = "License :: OSI Approved :: "


def declared_license(metadata: dict[str, str], classifiers: list[str]) -> str:
    """Return the license a distribution declares, most precise field first."""
    expression = metadata.get("License-Expression")
    if expression:
        return expression

    from_classifiers = [
        c.removeprefix(CLASSIFIER) for c in classifiers if c.startswith(CLASSIFIER)
    ]
    if from_classifiers:
        return " or ".join(from_classifiers)

    # Some projects put the whole license text in License:, so take its first line.
    text = (metadata.get("License") or "").strip()
    return text.splitlines()[0] if text else "see the distribution's metadata"


def installed_globs(lib: Path, info: Path) -> list[str]:
    """Return a Files: glob for each top-level file or folder that the
    distribution's RECORD lists and the build kept in lib.

    A distribution's import names need not match its own name (python-dotenv
    installs dotenv/, PyYAML installs yaml/, attrs installs attr/ too), so the
    names come from RECORD, not from the dist-info folder's name.
    """
    record = (info / "RECORD").read_text(encoding="utf-8")
    tops = {line.split(",", 1)[0].split("/", 1)[0] for line in record.splitlines()}
    globs = []
    for top in sorted(tops):
        path = lib / top
        if top in ("", "..") or not path.exists():
            continue
        suffix = "/*" if path.is_dir() else ""
        globs.append(f"usr/lib/jibril/{top}{suffix}")
    return globs


def bundled(lib: Path) -> list[str]:
    """Build one copyright paragraph for each dist-info folder under lib."""
    paragraphs = []
    for info in sorted(lib.glob("*.dist-info")):
        message = Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
        name, version = message["Name"], message["Version"]
        if name == "jibrild":
            continue

        classifiers = message.get_all("Classifier") or []
        license_name = declared_license(dict(message.items()), classifiers)
        files = "\n ".join(installed_globs(lib, info))
        paragraphs.append(
            f"Files: {files}\n"
            f"Copyright: the {name} authors; see /usr/lib/jibril/{info.name}/\n"
            f"Comment: {name} {version}, bundled from PyPI\n"
            f"License: {license_name}\n"
        )
    return paragraphs


def main() -> None:
    header, lib = Path(sys.argv[1]), Path(sys.argv[2])
    print(header.read_text(encoding="utf-8"), end="")
    for paragraph in bundled(lib):
        print()
        print(paragraph, end="")


if __name__ == "__main__":
    main()
