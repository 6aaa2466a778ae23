"""What follows a change of credentials: the token cache of users.authentication forgets the
token, and the account's open /ws/orders/ streams close (the admin, the services, management
commands and cascades all pass through here; a queryset `update()` does not, which the
streams' periodic re-check catches)."""

from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.db.transaction import on_commit
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from stockflow.streams import orders_streams_close_on_commit

from .authentication import token_cache_key
from .models import User


def _forget(key: str) -> None:
    cache_key = token_cache_key(key)
    cache.delete(cache_key)  # now, and after the commit, when a racing reader may have
    on_commit(lambda: cache.delete(cache_key), robust=True)  # stored the old row


@receiver(post_delete, sender=Token)
def token_deleted(sender, instance: Token, **kwargs) -> None:
    _forget(instance.key)
    orders_streams_close_on_commit(user_id=instance.user_id, token_key=instance.key)


@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
def user_changed(sender, instance: User, **kwargs) -> None:
    for key in Token.objects.filter(user_id=instance.pk).values_list("key", flat=True):
        _forget(key)


def _saves(field: str, update_fields) -> bool:
    return update_fields is None or field in update_fields


@receiver(post_save, sender=User)
def user_credentials_changed(sender, instance: User, created: bool, update_fields, **kwargs):
    if created:
        return  # nothing can be streaming yet
    deactivated = not instance.is_active and _saves("is_active", update_fields)
    # set_password() keeps the raw password in `_password` until save() has run the password
    # validators' hooks, which happens after this signal.
    password_changed = instance._password is not None and _saves("password", update_fields)
    if deactivated or password_changed:
        orders_streams_close_on_commit(user_id=instance.pk)
