from django.apps import AppConfig


class EventStoreConfig(AppConfig):
    name = "eventstore"
    verbose_name = "Event store"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from eventstore import recording  # noqa: F401 (connects the recorder)
