"""The services the tests start for themselves leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import redis

from tests.services import throwaway_redis


def test_throwaway_redis_removes_its_directory_and_stops_its_server():
    with throwaway_redis() as (url, process):
        client = redis.Redis.from_url(url)
        directory = Path(client.config_get("dir")["dir"])
        client.close()
        assert directory.is_dir()

    assert not directory.exists()
    assert process.returncode is not None
