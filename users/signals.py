"""Cache invalidation for users.authentication: a token's entry dies with any change of the
token or its account (the admin, the services and cascades all pass through here)."""

from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.db.transaction import on_commit
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from .authentication import token_cache_key
from .models import User


def _forget(key: str) -> None:
    cache_key = token_cache_key(key)
    cache.delete(cache_key)  # now, and after the commit, when a racing reader may have
    on_commit(lambda: cache.delete(cache_key), robust=True)  # stored the old row


@receiver(post_delete, sender=Token)
def token_deleted(sender, instance: Token, **kwargs) -> None:
    _forget(instance.key)


@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
def user_changed(sender, instance: User, **kwargs) -> None:
    for key in Token.objects.filter(user_id=instance.pk).values_list("key", flat=True):
        _forget(key)
