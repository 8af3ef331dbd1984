from accounts.views import sign_up
from django.urls import path

urlpatterns = [path("sign-up/", sign_up)]
