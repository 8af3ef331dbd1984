"""A management command that records each run in Redis, so a test can see it ran."""

from typing import Any

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Append the given word to the test session's record_call list in Redis."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("word")
        parser.add_argument("--tag", default="", help="appended to the word")

    def handle(self, *args: Any, **options: Any) -> None:
        client = redis.Redis.from_url(settings.REDIS_URL)
        client.rpush(f"{settings.KEY_PREFIX}record_call", options["word"] + options["tag"])
