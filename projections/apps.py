from django.apps import AppConfig


class ProjectionsConfig(AppConfig):
    name = "projections"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from eventstore.recording import events_committed
        from projections import checks, lookups, tasks  # noqa: F401 (checks, lookups)

        events_committed.connect(tasks.wake_after_commit, dispatch_uid="projections.wake")
