"""A /metrics endpoint whose series the test controls, for a real Prometheus to scrape.

It plays the canary pods of each namespace: the services' request counter and latency
histogram (the names the operator's queries use), with the `namespace` and `pod` labels
Prometheus would add from Kubernetes service discovery. Counters grow with time at the rate
the test sets, so `rate()` and `histogram_quantile()` in Prometheus see exactly that behaviour.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class Behaviour:
    requests_per_second: float
    error_ratio: float
    latency_seconds: float


IDLE = Behaviour(requests_per_second=0.0, error_ratio=0.0, latency_seconds=0.02)
HEALTHY = Behaviour(requests_per_second=40.0, error_ratio=0.0, latency_seconds=0.02)
FAILING = Behaviour(requests_per_second=40.0, error_ratio=0.3, latency_seconds=0.02)
SLOW = Behaviour(requests_per_second=40.0, error_ratio=0.0, latency_seconds=2.0)


@dataclass
class _Series:
    """Totals up to `since` (carried over from earlier behaviours, so counters never go down),
    then growth at the current behaviour's rates."""

    behaviour: Behaviour
    since: float
    ok: float = 0.0
    errors: float = 0.0
    buckets: tuple[float, ...] = (0.0,) * len(BUCKETS)

    def at(self, now: float) -> _Series:
        added = self.behaviour.requests_per_second * (now - self.since)
        failed = added * self.behaviour.error_ratio
        fast = tuple(
            before + (added if self.behaviour.latency_seconds <= bound else 0.0)
            for before, bound in zip(self.buckets, BUCKETS, strict=True)
        )
        return _Series(self.behaviour, now, self.ok + added - failed, self.errors + failed, fast)


def _replace(series: _Series, behaviour: Behaviour) -> _Series:
    return _Series(behaviour, series.since, series.ok, series.errors, series.buckets)


# Kubernetes probes and the Prometheus scrape: fast 200s on routes the analysis must ignore.
PROBES_PER_SECOND = 5.0


class CanaryMetrics:
    """Per namespace, one simulated canary pod named `<canary>-sim`: its users' requests on the
    checkout route, as the test sets them, and its probes' requests on /readyz, always."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}
        self._started = time.monotonic()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CanaryMetrics:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set(self, namespace: str, canary: str, behaviour: Behaviour) -> None:
        now = time.monotonic()
        with self._lock:
            key = (namespace, canary)
            old = self._series.get(key)
            self._series[key] = (
                _Series(behaviour, now) if old is None else _replace(old.at(now), behaviour)
            )

    def text(self) -> str:
        now = time.monotonic()
        probes = (now - self._started) * PROBES_PER_SECOND
        lines = [
            "# TYPE shop_http_requests_total counter",
            "# TYPE shop_http_request_duration_seconds histogram",
        ]
        with self._lock:
            for (namespace, canary), series in sorted(self._series.items()):
                current = series.at(now)
                ok, errors = current.ok, current.errors
                pod = f'namespace="{namespace}",pod="{canary}-sim",service="order"'
                labels = f'{pod},method="POST",route="/api/v1/orders"'
                lines.append(f'shop_http_requests_total{{{labels},status="200"}} {ok:.3f}')
                lines.append(f'shop_http_requests_total{{{labels},status="500"}} {errors:.3f}')
                count = ok + errors
                for bound, inside in zip(BUCKETS, current.buckets, strict=True):
                    lines.append(
                        f'shop_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} '
                        f"{inside:.3f}"
                    )
                lines.append(
                    f'shop_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count:.3f}'
                )
                lines.append(f"shop_http_request_duration_seconds_count{{{labels}}} {count:.3f}")
                probe = f'{pod},method="GET",route="/readyz"'
                lines.append(f'shop_http_requests_total{{{probe},status="200"}} {probes:.3f}')
                for le in (*(str(b) for b in BUCKETS), "+Inf"):
                    lines.append(
                        f'shop_http_request_duration_seconds_bucket{{{probe},le="{le}"}} '
                        f"{probes:.3f}"
                    )
        return "\n".join(lines) + "\n"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = metrics.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
