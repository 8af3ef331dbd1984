# [start:retry]
from celery import shared_task

from notifications.gateway import GatewayBusyError, sms_gateway


@shared_task(autoretry_for=(GatewayBusyError,), default_retry_delays=(60, 120, 180))
def send_sms(phone: str, text: str) -> str:
    return sms_gateway.send(phone, text)


# [end:retry]
