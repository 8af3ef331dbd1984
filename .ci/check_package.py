"""Build the sdist and the wheel, check what they hold, and install the wheel where nothing else is.

`make package` runs this, and so does CI. It fails, saying what is wrong, when:

- the sdist holds more than the package and its metadata files (the tests need a checkout),
  or the wheel lacks ``py.typed`` or holds anything beside the package;
- the metadata lacks a project URL, or the description (README.md) keeps a link relative to the
  repository, which the package index would resolve against its own page;
- the wheel, installed with its dependencies into a new virtual environment, cannot be imported
  from there or reports another version.

The build backend and the wheel's dependencies are installed at the versions of the committed
lock (``requirements/dev.txt``, as ``PIP_CONSTRAINT``), so that the check gives the same answer
on any day for the same commit.
"""

from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "celery_events"
PROJECT_URLS = {"Documentation", "Source", "Changelog", "Issues"}
LOCK = ROOT / "requirements" / "dev.txt"
SDIST_FILES = {"PKG-INFO", "pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE", ".gitignore"}
# A link whose target has no scheme: a Markdown link, a reference definition or an HTML attribute.
_NO_SCHEME = r"(?![a-z][a-z0-9+.-]*:)"
RELATIVE_LINK = re.compile(
    rf"\]\({_NO_SCHEME}([^)\s]*)\)"
    rf"|^ {{0,3}}\[[^\]]+\]:\s*{_NO_SCHEME}(\S+)"
    rf"|\b(?:href|src)\s*=\s*[\"']{_NO_SCHEME}([^\"']*)",
    re.IGNORECASE | re.MULTILINE,
)


class PackageError(Exception):
    """What is wrong with the built distributions."""


def run(*command: str | Path, cwd: Path | None = None) -> str:
    """Run a command under the lock's constraints; return its output, or raise when it fails."""
    completed = subprocess.run(  # noqa: S603 - our own interpreters and arguments
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PIP_CONSTRAINT": str(LOCK)},
    )
    if completed.returncode != 0:
        shown = " ".join(str(part) for part in command)
        msg = f"{shown} exited with {completed.returncode}:\n{completed.stdout}{completed.stderr}"
        raise PackageError(msg)
    return completed.stdout


def check_metadata(name: str, text: str) -> None:
    """Check the project URLs and the description's links of one distribution's metadata."""
    metadata = email.parser.HeaderParser().parsestr(text)
    urls = {entry.split(",", 1)[0].strip() for entry in metadata.get_all("Project-URL", [])}
    if missing := PROJECT_URLS - urls:
        msg = f"{name}: no Project-URL for {', '.join(sorted(missing))}"
        raise PackageError(msg)
    if metadata.get("Description-Content-Type") != "text/markdown":
        msg = f"{name}: Description-Content-Type is {metadata.get('Description-Content-Type')!r}"
        raise PackageError(msg)
    description = metadata.get_payload()
    if not isinstance(description, str) or not description.strip():
        msg = f"{name}: the metadata has no description"
        raise PackageError(msg)
    relative = [next(filter(None, match.groups())) for match in RELATIVE_LINK.finditer(description)]
    if relative:
        msg = f"{name}: the description keeps relative links: {', '.join(relative)}"
        raise PackageError(msg)


def check_sdist(sdist: Path) -> None:
    """The sdist holds the package and its metadata files, nothing else."""
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/", 1)[0]
        names = {name.removeprefix(f"{top}/") for name in archive.getnames() if name != top}
        pkg_info = archive.extractfile(f"{top}/PKG-INFO")
        if pkg_info is None:
            msg = f"{sdist.name}: no PKG-INFO"
            raise PackageError(msg)
        check_metadata(sdist.name, pkg_info.read().decode())
    extra = {
        name
        for name in names
        if name not in SDIST_FILES and name != PACKAGE and not name.startswith(f"{PACKAGE}/")
    }
    if extra:
        msg = f"{sdist.name}: ships more than the package: {', '.join(sorted(extra))}"
        raise PackageError(msg)
    if missing := SDIST_FILES - names:
        msg = f"{sdist.name}: lacks {', '.join(sorted(missing))}"
        raise PackageError(msg)


def check_wheel(wheel: Path) -> None:
    """The wheel holds the typed package and its dist-info, nothing else."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        check_metadata(wheel.name, archive.read(metadata).decode())
    outside = [
        name for name in names if not name.startswith((f"{PACKAGE}/", metadata.split("/")[0]))
    ]
    if outside:
        msg = f"{wheel.name}: holds files outside {PACKAGE}/: {', '.join(outside)}"
        raise PackageError(msg)
    if f"{PACKAGE}/py.typed" not in names:
        msg = f"{wheel.name}: lacks {PACKAGE}/py.typed, so type checkers ignore its annotations"
        raise PackageError(msg)


IMPORT_CHECK = f"""
import importlib.metadata, pathlib, sys
import {PACKAGE}, {PACKAGE}.signals
installed = importlib.metadata.version("celery-events")
assert {PACKAGE}.__version__ == installed, ({PACKAGE}.__version__, installed)
where = pathlib.Path({PACKAGE}.__file__).parent
assert where.is_relative_to(sys.prefix), f"imported from {{where}}, not the new environment"
assert (where / "py.typed").is_file(), "py.typed is not installed"
print(installed, where)
"""


def install_and_import(wheel: Path, directory: Path) -> str:
    """Install the wheel into a new virtual environment; import it there, away from the sources."""
    environment = directory / "venv"
    run(sys.executable, "-m", "venv", environment)
    python = environment / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel)
    # -I: neither the working directory nor PYTHONPATH can put the sources on sys.path.
    return run(python, "-I", "-c", IMPORT_CHECK, cwd=directory).strip()


def main() -> int:
    """Build, check and install; print what was checked, or what is wrong."""
    with tempfile.TemporaryDirectory(prefix="celery-events-package-") as temporary:
        directory = Path(temporary)
        try:
            # The wheel is built from the sdist, which proves the sdist builds on its own.
            run(sys.executable, "-m", "build", "--outdir", directory / "dist", ROOT)
            (sdist,) = (directory / "dist").glob("*.tar.gz")
            (wheel,) = (directory / "dist").glob("*.whl")
            check_sdist(sdist)
            check_wheel(wheel)
            installed = install_and_import(wheel, directory)
        except PackageError as error:
            print(f"package check failed: {error}", file=sys.stderr)
            return 1
    print(f"package check passed: {sdist.name}, {wheel.name}; installed {installed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
