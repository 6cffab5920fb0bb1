"""Check answers against the OpenAPI document: status, body and headers."""

import functools
import json
from typing import Any

import jsonschema
from drf_spectacular.generators import SchemaGenerator

HEADERS_WE_SET = ("ETag", "X-Read-Model-Stale", "WWW-Authenticate", "Retry-After")


@functools.cache
def openapi() -> dict[str, Any]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(json.dumps(schema, default=str))


def _resolve(node: Any, components: dict[str, Any]) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema: refs inlined, ``nullable`` as a null type."""
    if isinstance(node, list):
        return [_resolve(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _resolve(components[node["$ref"].rsplit("/", 1)[-1]], components)
    resolved = {key: _resolve(value, components) for key, value in node.items()}
    if resolved.pop("nullable", False):
        enum = resolved.get("enum")
        if enum is not None and None not in enum:
            resolved["enum"] = [*enum, None]
        return {"anyOf": [resolved, {"type": "null"}]}
    return resolved


def operation(path: str, method: str) -> dict[str, Any]:
    return openapi()["paths"][path][method.lower()]


def assert_documented(response: Any, path: str, method: str) -> None:
    """Fail unless ``response`` is one the document lists for this operation, as described."""
    documented = operation(path, method)["responses"]
    code = str(response.status_code)
    assert code in documented, f"{method} {path} answered {code}, documented: {sorted(documented)}"
    answer = documented[code]
    content = answer.get("content")
    if content:
        schema = _resolve(content["application/json"]["schema"], openapi()["components"]["schemas"])
        jsonschema.validate(response.json(), schema)
    else:
        assert not response.content, f"{code} has a body but none is documented"
    headers = answer.get("headers", {})
    for header in HEADERS_WE_SET:
        if header in response.headers:
            assert header in headers, f"{header} on a {code} is not documented"
    if "ETag" in headers:
        assert "ETag" in response.headers
