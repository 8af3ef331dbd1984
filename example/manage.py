#!/usr/bin/env python
"""The example project's command line: ``python manage.py check``, ``celery_events list``...

Run it from this directory in the repository's virtual environment (``make demo`` creates it),
with ``REDIS_URL`` set for the lock commands: the README's "Why didn't my task run?" shows how.
"""

from __future__ import annotations

import os
import sys

from django.core.management import execute_from_command_line

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    execute_from_command_line(sys.argv)
