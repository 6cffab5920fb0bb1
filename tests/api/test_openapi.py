import re

import pytest
from django.core.management import call_command

from tests.api.schema import openapi

OPERATIONS = {
    ("/api/products/", "get"),
    ("/api/products/{product_id}/", "get"),
    ("/api/sellers/{seller_id}/", "get"),
    ("/api/reviews/", "post"),
    ("/api/reviews/{review_id}/", "patch"),
    ("/api/reviews/{review_id}/", "delete"),
    ("/api/products/{product_id}/price/", "post"),
    ("/api/products/{product_id}/stock/", "post"),
    ("/api/auth/token/", "post"),
}
# Public writes: the credentials are in the body.
PUBLIC_POSTS = {("/api/auth/token/", "post")}


def operations():
    for path, methods in openapi()["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_the_schema_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yaml"))
    assert (tmp_path / "s.yaml").read_text().startswith("openapi: 3.0.3")


def test_every_endpoint_is_documented_and_nothing_else():
    assert {(path, method) for path, method, _ in operations()} == OPERATIONS


@pytest.mark.parametrize(("path", "method"), sorted(OPERATIONS))
def test_every_operation_describes_its_parameters_and_answers(path, method):
    operation = openapi()["paths"][path][method]
    assert operation["summary"]
    for parameter in operation.get("parameters", []):
        assert parameter.get("description"), parameter["name"]
    for code, answer in operation["responses"].items():
        assert answer["description"], code
        for header, described in answer.get("headers", {}).items():
            assert described["description"], (code, header)
    codes = set(operation["responses"])
    if method == "get":
        assert {"200", "400"} <= codes
        if "{" in path:
            assert {"304", "404"} <= codes
    elif (path, method) in PUBLIC_POSTS:
        assert {"200", "400", "413", "415", "429"} <= codes
    else:
        assert {"400", "401"} <= codes or method == "delete"
        assert "401" in codes
        assert "404" in codes


def test_the_query_endpoints_are_public_and_the_commands_are_not():
    for path, method, operation in operations():
        security = operation.get("security", [])
        if method == "get" or (path, method) in PUBLIC_POSTS:
            assert security == [{}], path
        else:
            schemes = {name for requirement in security for name in requirement}
            assert schemes == {"cookieAuth", "tokenAuth"}, path


def test_the_schema_and_the_docs_are_served(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert schema.json()["openapi"] == "3.0.3"
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    start_up = client.get("/api/docs/", {"script": ""})
    assert start_up["Content-Type"].startswith("application/javascript")
    assert b"/api/schema/" in start_up.content
    redoc = client.get("/api/redoc/")
    assert redoc.status_code == 200
    assert b'spec-url="/api/schema/"' in redoc.content


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_the_docs_load_only_our_own_static_files_and_run_no_inline_script(client, page):
    html = client.get(page).content.decode()
    policy = client.get(page)["Content-Security-Policy"]

    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sources
    assert all(source.startswith(("/static/", "/api/")) for source in sources), sources
    assert "<script>" not in html, "an inline script"
    assert "http" not in policy, "the policy names another host"
    assert "script-src 'self';" in policy


@pytest.mark.django_db(databases=["default", "read"])
def test_the_api_root_is_a_json_index_of_the_endpoints(api):
    response = api.get("/api/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    index = response.json()
    assert index["schema"] == "/api/schema/"
    assert api.get(index["products"]).status_code == 200
    assert api.get(index["docs"]).status_code == 200
    schema_paths = set(api.get(index["schema"], {"format": "json"}).json()["paths"])
    assert api.get(index["redoc"]).status_code == 200
    listed = {path for name, path in index.items() if name not in ("schema", "docs", "redoc")}
    assert listed == schema_paths
