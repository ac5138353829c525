from django.contrib.auth.models import AbstractUser
from django.db import models
from simple_history.models import HistoricalRecords


class User(AbstractUser):
    pass


class Customer(User):
    phone_number = models.CharField(max_length=128, null=True, unique=True)
    full_name = models.CharField(max_length=255, default='')
    is_verified = models.BooleanField(default=False)
    history = HistoricalRecords()
