"""``manage.py celery_events explain|list|release``: the unique locks and ignore windows of calls.

A thin command-line layer over :mod:`celery_events.operations` (with the input parsing of
:mod:`celery_events.operator_input` and the words of :mod:`celery_events.operator_text`). What it
prints of the lock store (task names, task ids, keys, index entries) has its control characters
escaped, so that a value that anyone who can write to the cache's Redis planted cannot drive the
operator's terminal.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from celery_events import operations
from celery_events.operator_input import get_task, parse_call
from celery_events.operator_text import KIND_NAMES, arguments_text, call_text, time_left_text

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Command"]


class Command(BaseCommand):
    """Explain, list and release the unique locks and ignore windows of tasks."""

    help = "Explain, list and release the unique locks and ignore windows of celery-events tasks."
    #: ``call_command(..., stdin=...)`` answers release's confirmation from that stream.
    stealth_options = ("stdin",)

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        """Return the command's parser; it refuses abbreviated options (``--ye`` for ``--yes``)."""
        return super().create_parser(prog_name, subcommand, allow_abbrev=False, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        """Add the subcommands explain, list and release.

        Each also takes Django's options of every command (``--settings``, ``--pythonpath``,
        ``--verbosity``, ``--traceback``...), so that they work after the subcommand too.
        """
        common = _common_options(parser)
        subcommands = parser.add_subparsers(dest="subcommand", required=True)

        def add(name: str, help_text: str) -> CommandParser:
            subparser: CommandParser = subcommands.add_parser(
                name, help=help_text, allow_abbrev=False, parents=[common]
            )
            return subparser

        explain = add("explain", "what the next call would do, and why")
        self._add_call(explain)
        explain.add_argument("--json", action="store_true", help="print JSON")

        listing = add("list", "every held lock and open ignore window, soonest to expire first")
        listing.add_argument("--task", metavar="NAME", help="only this task's")
        listing.add_argument(
            "--json",
            action="store_true",
            help=f"print JSON, a page of about {operations.PAGE_SIZE} keys at a time",
        )
        listing.add_argument(
            "--cursor", help='with --json: the page that starts where a page\'s "cursor" says'
        )

        release = add("release", "remove a call's lock and/or ignore window, or all of a task's")
        self._add_call(release)
        only = release.add_mutually_exclusive_group()
        only.add_argument("--lock", action="store_true", help="only the unique lock")
        only.add_argument("--ignore", action="store_true", help="only the ignore window")
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
                release to confirm without a terminal (and without ``--yes``); one line.
        """
        try:
            getattr(self, f"_{options['subcommand']}")(options)
        except operations.UNANSWERED as exc:
            raise CommandError(_printable(str(exc))) from exc

    def _say(self, line: str, *, ending: str | None = None) -> None:
        """Write ``line`` to stdout, its control characters escaped."""
        self.stdout.write(_printable(line), ending=ending)

    def _warn(self, line: str) -> None:
        """Write ``line`` to stderr, its control characters escaped."""
        self.stderr.write(_printable(line))

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
            self._say(f"{label:<{width}}  {value}")

    def _list(self, options: dict[str, Any]) -> None:
        name = options["task"]
        if name is not None:
            get_task(name)
        if options["json"]:
            page = operations.held_page(options["cursor"], task_name=name)
            self.stdout.write(json.dumps(_page_dict(page), indent=2))
            return
        if options["cursor"] is not None:
            msg = "--cursor pages list --json; the plain list shows every key"
            raise CommandError(msg)
        listed = operations.held(name)
        if listed.keys:
            self._table(listed.keys)
        else:
            self._say("no unique lock is held and no ignore window is open")
        self._report_bad(listed.bad, "not listed")

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
            call = call_text(explanation.args, explanation.kwargs)
            self._say(f"nothing to release for {task.name}{call}")
            return
        for state in chosen:
            self._say(f"{KIND_NAMES[state.kind]} {state.key} of {state.task_id}")
        if self._confirm(options, len(chosen)):
            removed = operations.release(task, explanation, lock=lock, window=window)
            self._report_released(chosen, removed)

    def _release_all(self, options: dict[str, Any]) -> None:
        """Release exactly the keys shown, each only while it holds the task id shown."""
        name = options["task_option"] or options["task"]
        if not name:
            msg = "release --all needs --task NAME"
            raise CommandError(msg)
        if options["call_args"] or options["call_kwargs"]:
            msg = "release --all takes no --args nor --kwargs"
            raise CommandError(msg)
        get_task(name)
        listed = operations.held(name)
        kind = "unique" if options["lock"] else "ignore" if options["ignore"] else None
        keys = [key for key in listed.keys if kind is None or key.kind == kind]
        self._report_bad(listed.bad, "not released")
        if not keys:
            self._say(f"nothing to release for task {name}")
            return
        self._table(keys)
        if self._confirm(options, len(keys)):
            self._report_released(keys, operations.discard(keys))

    def _report_released(
        self,
        chosen: Sequence[operations.KeyState | operations.HeldKey],
        removed: Sequence[operations.KeyState | operations.HeldKey],
    ) -> None:
        """Say which of the keys ``chosen`` were released, and which were kept, and why."""
        for state in chosen:
            kind = KIND_NAMES[state.kind]
            if state in removed:
                self._say(f"released {kind} {state.key} of {state.task_id}")
            else:
                self._say(
                    f"kept {kind} {state.key}: it no longer holds {state.task_id} "
                    "(released, expired or taken by another call)"
                )

    def _report_bad(self, bad: Sequence[operations.BadEntry], what: str) -> None:
        for entry in bad:
            self._warn(f"bad index entry {entry.entry} ({what}): {entry.problem}")

    def _call(self, options: dict[str, Any]) -> tuple[Any, list[Any], dict[str, Any]]:
        name = options["task_option"] or options["task"]
        if not name:
            msg = "name the task: celery_events explain NAME (or --task NAME)"
            raise CommandError(msg)
        task = get_task(name)
        call_args, call_kwargs = parse_call(options["call_args"], options["call_kwargs"])
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
        self._say(f"Release {noun}? [y/N] ", ending="")
        self.stdout.flush()
        if stdin.readline().strip().lower() in {"y", "yes"}:
            return True
        self._say("nothing released")
        return False

    def _table(self, keys: Sequence[operations.HeldKey]) -> None:
        rows = [("TIME LEFT", "KIND", "TASK", "TASK ID", "KEY", "ARGUMENTS")]
        rows += [
            (
                time_left_text(key.ttl),
                key.kind,
                _printable(key.task_name),
                _printable(key.task_id),
                _printable(key.key),
                arguments_text(key, reveal=True) or "-",
            )
            for key in keys
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(5)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            cells[0] = row[0].rjust(widths[0])
            self._say("  ".join([*cells, row[5]]))


def _common_options(parser: CommandParser) -> CommandParser:
    """Return a parser of the options Django gives ``parser``, for the subcommands to take too.

    Copies of them, whose default is to set nothing: given after the subcommand, an option sets
    the value that the command's parser would have set; not given there, it leaves that value.
    """
    common = CommandParser(add_help=False, allow_abbrev=False)
    # _actions is argparse's list of a parser's arguments; it has no public one.
    for action in parser._actions:  # noqa: SLF001
        if action.option_strings and action.dest not in {"help", "version"}:
            copied = copy.copy(action)
            copied.default = argparse.SUPPRESS
            common._add_action(copied)  # noqa: SLF001 - adds an action as it is, as parents do
    return common


def _page_dict(page: operations.HeldPage) -> dict[str, Any]:
    return {
        "keys": [
            {
                "task_name": key.task_name,
                "kind": key.kind,
                "task_id": key.task_id,
                "ttl": key.ttl,
                "key": key.key,
                "args": key.args,
                "kwargs": key.kwargs,
                "shape": key.shape,
            }
            for key in page.keys
        ],
        "bad": [{"entry": bad.entry, "problem": bad.problem} for bad in page.bad],
        "cursor": page.cursor,
    }


def _printable(text: str) -> str:
    r"""Return ``text`` with its unprintable characters escaped: ``\x1b``, ``\u202e``..."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:  # noqa: PLR2004 - the range of \xNN
        return f"\\x{code:02x}"
    if code <= 0xFFFF:  # noqa: PLR2004 - the range of \uNNNN
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
