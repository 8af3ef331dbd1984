"""``manage.py celery_events explain|list|release``: the unique locks and ignore windows of calls.

A thin command-line layer over :mod:`celery_events.operations`.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from django.core.management.base import BaseCommand, CommandError

from celery_events import operations
from celery_events.locks import LockStoreUnavailableError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.core.management.base import CommandParser

__all__ = ["Command"]


class Command(BaseCommand):
    """Explain, list and release the unique locks and ignore windows of tasks."""

    help = "Explain, list and release the unique locks and ignore windows of celery-events tasks."
    #: ``call_command(..., stdin=...)`` answers release's confirmation from that stream.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        """Add the subcommands explain, list and release."""
        subcommands = parser.add_subparsers(dest="subcommand", required=True)

        explain = subcommands.add_parser("explain", help="what the next call would do, and why")
        self._add_call(explain)
        explain.add_argument("--json", action="store_true", help="print JSON")

        listing = subcommands.add_parser(
            "list", help="every held lock and open ignore window, soonest to expire first"
        )
        listing.add_argument("--task", metavar="NAME", help="only this task's")
        listing.add_argument("--json", action="store_true", help="print JSON")

        release = subcommands.add_parser(
            "release", help="remove a call's lock and/or ignore window, or all of a task's"
        )
        self._add_call(release)
        release.add_argument("--lock", action="store_true", help="only the unique lock")
        release.add_argument("--ignore", action="store_true", help="only the ignore window")
        release.add_argument(
            "--all", action="store_true", help="every lock and window of --task NAME"
        )
        release.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    @staticmethod
    def _add_call(parser: CommandParser) -> None:
        parser.add_argument("task", nargs="?", help="the task's name")
        parser.add_argument("--task", dest="task_option", metavar="NAME", help="the task's name")
        parser.add_argument(
            "--args", dest="call_args", help="positional arguments, a JSON list (default [])"
        )
        parser.add_argument(
            "--kwargs", dest="call_kwargs", help="keyword arguments, a JSON object (default {})"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the subcommand.

        Raises:
            CommandError: bad input, a cache that cannot list, an unreachable Redis, or a
                release to confirm without a terminal (and without ``--yes``).
        """
        try:
            getattr(self, f"_{options['subcommand']}")(options)
        except (operations.OperationError, LockStoreUnavailableError) as exc:
            raise CommandError(str(exc)) from exc

    def _explain(self, options: dict[str, Any]) -> None:
        task, call_args, call_kwargs = self._call(options)
        explanation = operations.explain(task, call_args, call_kwargs)
        if options["json"]:
            self.stdout.write(json.dumps(explanation.as_dict(), indent=2))
            return
        lines = [
            ("task", explanation.task_name),
            ("args", json.dumps(explanation.args)),
            ("kwargs", json.dumps(explanation.kwargs)),
        ]
        lines += explanation.key_lines()
        lines.append(("next call", explanation.next_call_text()))
        width = max(len(label) for label, _ in lines)
        for label, value in lines:
            self.stdout.write(f"{label:<{width}}  {value}")

    def _list(self, options: dict[str, Any]) -> None:
        keys = operations.held(options["task"]).keys
        if options["json"]:
            self.stdout.write(json.dumps([_held_dict(key) for key in keys], indent=2))
            return
        if not keys:
            self.stdout.write("no unique lock is held and no ignore window is open")
            return
        self._table(keys)

    def _release(self, options: dict[str, Any]) -> None:
        if options["all"]:
            self._release_all(options)
            return
        task, call_args, call_kwargs = self._call(options)
        explanation = operations.explain(task, call_args, call_kwargs)
        both = not options["lock"] and not options["ignore"]
        lock, window = both or options["lock"], both or options["ignore"]
        chosen = [
            state
            for state in (
                explanation.lock if lock else None,
                explanation.window if window else None,
            )
            if state is not None and state.task_id is not None
        ]
        if not chosen:
            call = operations.call_text(explanation.args, explanation.kwargs)
            self.stdout.write(f"nothing to release for {task.name}{call}")
            return
        for state in chosen:
            self.stdout.write(f"{operations.KIND_NAMES[state.kind]} {state.key} of {state.task_id}")
        if not self._confirm(options, len(chosen)):
            return
        removed = operations.release(task, explanation, lock=lock, window=window)
        for state in removed:
            self.stdout.write(
                f"released {operations.KIND_NAMES[state.kind]} {state.key} of {state.task_id}"
            )
        for state in chosen:
            if state not in removed:
                self.stdout.write(
                    f"kept {operations.KIND_NAMES[state.kind]} {state.key}: it no longer holds "
                    f"{state.task_id} (released, expired or taken by another call)"
                )

    def _release_all(self, options: dict[str, Any]) -> None:
        name = options["task_option"] or options["task"]
        if not name:
            msg = "release --all needs --task NAME"
            raise CommandError(msg)
        if options["call_args"] or options["call_kwargs"]:
            msg = "release --all takes no --args nor --kwargs"
            raise CommandError(msg)
        operations.get_task(name)
        keys = operations.held(name).keys
        if not keys:
            self.stdout.write(f"nothing to release for task {name}")
            return
        self._table(keys)
        if not self._confirm(options, len(keys)):
            return
        for key in operations.release_task(name):
            self.stdout.write(
                f"released {operations.KIND_NAMES[key.kind]} {key.key} of {key.task_id}"
            )

    def _call(self, options: dict[str, Any]) -> tuple[Any, list[Any], dict[str, Any]]:
        name = options["task_option"] or options["task"]
        if not name:
            msg = "name the task: celery_events explain NAME (or --task NAME)"
            raise CommandError(msg)
        task = operations.get_task(name)
        call_args, call_kwargs = operations.parse_call(options["call_args"], options["call_kwargs"])
        return task, call_args, call_kwargs

    def _confirm(self, options: dict[str, Any], count: int) -> bool:
        if options["yes"]:
            return True
        # sys.stdin is None when the process was started with no stdin at all.
        stdin: TextIO | None = options.get("stdin") or sys.stdin
        # Asked only on a terminal: from a pipe that never closes (kubectl exec -i, a CI step)
        # the answer would be waited for forever, and one that is closed (cron, stdin
        # /dev/null) would read as "no" and release nothing without saying why.
        if stdin is None or not stdin.isatty():
            msg = (
                "release asks for confirmation, and stdin is not a terminal to answer on: "
                "pass --yes to release without asking"
            )
            raise CommandError(msg)
        noun = "this key" if count == 1 else f"these {count} keys"
        self.stdout.write(f"Release {noun}? [y/N] ", ending="")
        self.stdout.flush()
        if stdin.readline().strip().lower() in {"y", "yes"}:
            return True
        self.stdout.write("nothing released")
        return False

    def _table(self, keys: Sequence[operations.HeldKey]) -> None:
        rows = [("TIME LEFT", "KIND", "TASK", "TASK ID", "KEY")]
        rows += [
            (operations.time_left_text(key.ttl), key.kind, key.task_name, key.task_id, key.key)
            for key in keys
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            cells[0] = row[0].rjust(widths[0])
            self.stdout.write("  ".join([*cells, row[4]]))


def _held_dict(key: operations.HeldKey) -> dict[str, Any]:
    return {
        "task_name": key.task_name,
        "kind": key.kind,
        "task_id": key.task_id,
        "ttl": key.ttl,
        "key": key.key,
        "args": key.args,
        "kwargs": key.kwargs,
    }
