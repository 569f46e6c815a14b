"""The OpenAPI document is built from the router: nothing registered can be missing from it."""
from __future__ import annotations

from aiohttp import web

from ingestflow.app.web import openapi
from ingestflow.app.gateway.app import build_gateway


def test_every_route_of_the_gateway_is_described(settings_factory) -> None:  # type: ignore[no-untyped-def]
    app = build_gateway(settings_factory())
    doc = openapi.build(app)
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue
        path = route.resource.canonical
        assert route.method.lower() in doc["paths"][path], (route.method, path)
    assert doc["paths"]["/ingest/events"]["post"]["parameters"][0]["name"] == "x-app-token"


def test_undescribed_routes_get_path_parameters_and_their_docstring() -> None:
    async def handler(request: web.Request) -> web.Response:
        """Read one widget."""
        return web.Response()
    app = web.Application()
    app.router.add_get("/widgets/{widget_id}/parts/{part}", handler)
    app.router.add_post("/widgets", handler)
    paths = openapi.build(app)["paths"]
    get = paths["/widgets/{widget_id}/parts/{part}"]["get"]
    assert get["summary"] == "Read one widget."
    assert [p["name"] for p in get["parameters"]] == ["widget_id", "part"]
    assert all(p["in"] == "path" and p["required"] for p in get["parameters"])
    assert "requestBody" in paths["/widgets"]["post"]
    assert len({op["operationId"] for ops in paths.values() for op in ops.values()}) == 2
