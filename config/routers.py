"""Send the read models to alias ``read`` and everything else to ``default``.

The read models are the projections app's models listed by name in
``READ_MODEL_NAMES`` (by name, so that the historical models of migrations,
which are not the real classes, are routed the same way).
"""

from typing import Any

from django.db.models import Model

from eventstore.databases import READ_DB, WRITE_DB

READ_MODEL_NAMES = frozenset(
    {
        ("projections", "productreadmodel"),
        ("projections", "sellerreadmodel"),
        ("projections", "reviewreadmodel"),
        ("projections", "relatedlink"),
        ("projections", "productfacts"),
        ("projections", "sellerfacts"),
        ("projections", "checkpoint"),
        ("projections", "parkedevent"),
        ("projections", "rebuildrun"),
    }
)


def is_read_model(model: type[Model] | Model) -> bool:
    return (model._meta.app_label, model._meta.model_name) in READ_MODEL_NAMES


class ReadModelRouter:
    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        return READ_DB if is_read_model(model) else WRITE_DB

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        return READ_DB if is_read_model(model) else WRITE_DB

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        # Not type(obj): request.user is a lazy proxy whose type is not the model's.
        return is_read_model(obj1) == is_read_model(obj2)

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool:
        if model_name is None:
            target = hints.get("target_db")
            return db == target if target else db == WRITE_DB
        on_read = (app_label, model_name) in READ_MODEL_NAMES
        return db == (READ_DB if on_read else WRITE_DB)
