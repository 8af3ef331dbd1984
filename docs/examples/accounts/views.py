from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest, HttpResponse

from accounts.tasks import send_welcome_email


def sign_up(request: HttpRequest) -> HttpResponse:
    with transaction.atomic():
        user = User.objects.create_user(request.POST["username"], request.POST["email"])
        # Published when the transaction commits; never, if it rolls back.
        send_welcome_email.delay_on_commit(user.pk)
    return HttpResponse(status=201)
