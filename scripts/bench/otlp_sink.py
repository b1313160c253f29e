"""Where P4's traces go: an OTLP/HTTP endpoint that accepts export requests and counts them,
so the measured cost is the services' (spans made, batched, serialized, sent), not a
collector's CPU on the same two cores. GET /stats tells whether anything arrived."""

from __future__ import annotations

import argparse

from aiohttp import web


def create_app() -> web.Application:
    stats = {"requests": 0, "bytes": 0}

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        stats["requests"] += 1
        stats["bytes"] += len(body)
        # An empty ExportTraceServiceResponse: no partial success to report.
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def read_stats(_: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/stats", read_stats)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
