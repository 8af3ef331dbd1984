from celery import shared_task
from django.contrib.auth.models import User
from django.core.mail import send_mail


@shared_task(autoretry_for=(ConnectionError,), default_retry_delays=(10, 60, 300))
def send_welcome_email(user_id: int) -> None:
    user = User.objects.get(pk=user_id)
    send_mail("Welcome", f"Hello {user.username}!", None, [user.email])
