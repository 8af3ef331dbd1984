"""What a call returns, as the shell shows it."""

from __future__ import annotations

import re
import warnings

import pytest
from celery.exceptions import CDeprecationWarning

from celery_events.celery import Celery


def runs_nothing():
    """The body of the task of the app without a result backend."""


@pytest.fixture(name="app_without_result_backend")
def fixture_app_without_result_backend():
    """A Celery app with kombu's in-memory broker and no result backend, as a project may be."""
    app = Celery("no-result-backend", broker="memory://", set_as_current=False)
    with warnings.catch_warnings():
        # Shared tasks of the docs' examples, if a test imported them, join the app as it is
        # finalized; one sets the queue attribute that Celery 5.7 deprecates, on purpose.
        warnings.simplefilter("ignore", CDeprecationWarning)
        app.finalize()
    app.task(name="own.runs_nothing")(runs_nothing)
    yield app
    app.close()


def test_repr_of_a_published_call_asks_no_result_backend(app_without_result_backend):
    result = app_without_result_backend.tasks["own.runs_nothing"].delay()

    # The state would be asked of the backend, which there is not: a repr shows the ids only.
    assert re.fullmatch(rf"<ResultWrapper [0-9a-f-]{{36}} id={result.id}>", repr(result))


def test_repr_of_an_eager_call_shows_its_state(app_without_result_backend):
    result = app_without_result_backend.tasks["own.runs_nothing"].apply()

    assert repr(result).endswith(f" state=SUCCESS id={result.id}>")
