from django.apps import AppConfig


class ProjectionsConfig(AppConfig):
    name = "projections"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from projections import checks, lookups, receivers  # noqa: F401
