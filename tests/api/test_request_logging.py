"""A client's bad requests are not logged one by one (the access log has
them): a flood of them cannot flood the application's log."""

import logging

import pytest

from tests.api.factories import ProductRowFactory

pytestmark = pytest.mark.django_db(databases=["default", "read"])


def test_a_client_error_writes_no_log_line(api, caplog):
    ProductRowFactory(product_id=42)

    with caplog.at_level(logging.DEBUG, logger="django"):
        answers = [
            api.get("/api/products/42/", HTTP_X_CONSISTENCY_TOKEN="1-2.forged.token"),
            api.get("/api/products/999999/"),
            api.post("/api/products/42/"),
        ]

    assert [answer.status_code for answer in answers] == [400, 404, 405]
    assert [r for r in caplog.records if r.name == "django.request"] == []
