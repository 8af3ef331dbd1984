# [start:queues]
from celery_events.celery import CeleryQueueEnum


class Queue(CeleryQueueEnum):
    FAST = ("fast", {"time_limit": 10, "soft_time_limit": 8})
    REPORTS = ("reports", {"time_limit": 3600})


# [end:queues]
