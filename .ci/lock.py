"""Write the committed locks of requirements/ with uv: `make lock` and `make upgrade` run this.

- ``requirements/dev.txt``: every extra of the project and the toolchain of
  ``requirements/dev.in``, resolved for every Python the project supports (``--universal``).
  ``make`` installs the development environment from it; tox's lint, type and docs
  environments and ``make package`` take it as constraints.
- ``requirements/tox/<environment>.txt``: one per test environment of ``tox.ini``'s matrix, for
  its Python and with its factors' pins (Django and Celery series); tox installs each
  environment under it (``PIP_CONSTRAINT``).

Without ``--upgrade``, uv keeps the versions already pinned and only resolves what changed (a
dependency added to ``pyproject.toml``); with it, every package moves to its newest release that
fits. ``tox -e newest`` is the one environment outside the locks.
"""

from __future__ import annotations

import argparse
import configparser
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
LOWEST_PYTHON = "3.10"
#: A test environment's name: pyXY, then its factors (django42-celery55).
TEST_ENVIRONMENT = re.compile(r"^py(?P<major>\d)(?P<minor>\d+)-")


def compile_lock(
    output: Path, sources: list[str], *arguments: str, upgrade: bool, stdin: str | None = None
) -> None:
    """Resolve ``sources`` (paths, ``-`` for ``stdin``) with ``uv pip compile`` into ``output``."""
    command = [
        *(sys.executable, "-m", "uv", "pip", "compile", "--quiet"),
        *sources,
        *("--output-file", str(output.relative_to(ROOT))),
        *("--custom-compile-command", "make upgrade"),
        *arguments,
    ]
    if upgrade:
        command.append("--upgrade")
    subprocess.run(command, cwd=ROOT, check=True, input=stdin, text=True)  # noqa: S603 - ours


def test_environments() -> dict[str, tuple[str, list[str], list[str]]]:
    """Return each test environment of tox.ini: its Python, extras and pinned requirements."""
    shown = subprocess.run(
        [sys.executable, "-m", "tox", "config", "-e", "ALL", "-k", "deps", "extras"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(shown)
    environments = {}
    for section in config.sections():
        name = section.removeprefix("testenv:")
        match = TEST_ENVIRONMENT.match(name)
        if match is None:  # lint, type, docs: constrained by dev.txt; newest: unpinned
            continue
        python = f"{match['major']}.{match['minor']}"
        deps = config[section]["deps"].split()
        extras = config[section]["extras"].split()
        environments[name] = (python, extras, deps)
    return environments


def main() -> None:
    """Write requirements/dev.txt and one lock per test environment of tox.ini."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="move every pin to its newest")
    upgrade = parser.parse_args().upgrade
    compile_lock(
        REQUIREMENTS / "dev.txt",
        ["pyproject.toml", "requirements/dev.in"],
        *("--all-extras", "--universal", "--python-version", LOWEST_PYTHON),
        upgrade=upgrade,
    )
    environments = test_environments()
    locks = REQUIREMENTS / "tox"
    for stale in set(locks.glob("*.txt")) - {locks / f"{name}.txt" for name in environments}:
        stale.unlink()

    def lock_environment(name: str) -> None:
        python, extras, deps = environments[name]
        compile_lock(  # the factors' pins come on stdin, named "-" in the lock's comments
            locks / f"{name}.txt",
            ["pyproject.toml", "-"],
            *(argument for extra in extras for argument in ("--extra", extra)),
            *("--python-version", python),
            upgrade=upgrade,
            stdin="\n".join(deps) + "\n",
        )
        print(f"requirements/tox/{name}.txt: Python {python}, {' '.join(deps)}")

    # uv spends most of a resolution waiting for the package index: several at once.
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lock_environment, sorted(environments)))


if __name__ == "__main__":
    main()
