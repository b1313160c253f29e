"""Sweet Slice load test: shoppers walking the public API through the gateway.

Each simulated user is a customer of its own: it registers and logs in when it starts, then
picks a journey after every pause ("think time"). Journey weights (out of 100), browse-heavy
like real shops, where most visits end without a purchase:

    browse the catalog, paged   30   the nav (categories), a first page, maybe the next ones
    product page                30   a product seen on an earlier page
    search                      15   bakery words, some without any hit
    add to cart                 12   a product page, then one or two of it if in stock
    view cart                    6
    checkout                     4   fresh Idempotency-Key each time; 5 % of cards are declined
                                     and retried with a good card, as people do
    order history                3   the list, then the newest order

So about one visit in eight puts something in the cart and one in three of those buys, in
line with published e-commerce funnels (add-to-cart ~10 %, conversion 2-4 %).

Requests are named by route template (``tests/load/routes.py``). Answers a journey can get on a
healthy platform count as successes: 201 or 202 for a checkout, 402 for a declined card, 409
``insufficient-stock`` when a product sold out between the product page and the checkout (the
shopper then empties the cart). Anything else fails with a message naming the status and the
problem type; 429 and 503 (the gateway shedding or rate limiting) are also counted apart and
reported at the end.

Run modes (``--shape``, or ``LOCUST_SHAPE``): ``constant`` (``--users`` at ``--spawn-rate`` for
``--run-time``), ``step`` and ``spike``; see ``tests/load/shapes.py``. At the end the SLO check
compares the error rate of all requests with ``--slo-error-rate`` and the p95 of the shopping
requests (all but sign-up and login) with ``--slo-p95-ms``, and makes the process exit 1 when
either is exceeded.
"""

from __future__ import annotations

import logging
import random
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from locust import FastHttpUser, LoadTestShape, events, task
from locust import log as locust_log
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment
from locust.runners import WorkerRunner
from locust.stats import StatsEntry

from tests.load import routes, shapes
from tests.load.routes import Request

log = logging.getLogger("sweetslice.load")

SEARCH_TERMS = (
    "croissant", "sourdough", "chocolate", "cookie", "cake", "coffee", "almond", "cinnamon",
    "lemon", "rye", "pie", "butter", "espresso", "macaron", "gluten free", "bagel",
)  # fmt: skip
CARDS = ("tok_visa", "tok_mastercard")
DECLINED_CARD = "tok_chargeDeclined"
DECLINE_SHARE = 0.05
PAGE_SIZE = 20
SHIPPING = {
    "name": "Load Tester",
    "line1": "1 Oven Lane",
    "city": "Springfield",
    "postal_code": "12345",
    "country": "US",
}
# Problem types a healthy platform can answer a journey with (beyond the 2xx it expects).
SOLD_OUT = "insufficient-stock"
SHED_HINT = {
    429: "the gateway's per-client limit (every simulated shopper shares this "
    "machine's address; README: Load testing)",
    503: "shed or a dependency is down",
}

# Tallies of this process, reported when it quits.
shed: Counter[int] = Counter()
sold_out: Counter[str] = Counter()


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    group = parser.add_argument_group("Sweet Slice", "shape, think time and SLO limits")
    group.add_argument(
        "--shape", choices=shapes.SHAPES, default="constant", env_var="LOCUST_SHAPE",
        help="constant: --users at --spawn-rate; step: --step-users more every --step-seconds "
        "up to --users; spike: a base load, all --users at once, the base again",
    )  # fmt: skip
    group.add_argument("--step-users", type=int, default=10, env_var="LOCUST_STEP_USERS")
    group.add_argument("--step-seconds", type=float, default=30.0, env_var="LOCUST_STEP_SECONDS")
    group.add_argument(
        "--spike-base-users", type=int, default=None, env_var="LOCUST_SPIKE_BASE_USERS",
        help="load around the spike (default: a fifth of --users)",
    )  # fmt: skip
    group.add_argument(
        "--spike-start", type=float, default=None, env_var="LOCUST_SPIKE_START",
        help="seconds into the run (default: a third of --run-time)",
    )  # fmt: skip
    group.add_argument(
        "--spike-seconds", type=float, default=None, env_var="LOCUST_SPIKE_SECONDS",
        help="how long the spike lasts (default: a third of --run-time)",
    )  # fmt: skip
    group.add_argument(
        "--think-min", type=float, default=1.0, env_var="LOCUST_THINK_MIN",
        help="shortest pause between a shopper's journeys, seconds",
    )  # fmt: skip
    group.add_argument("--think-max", type=float, default=4.0, env_var="LOCUST_THINK_MAX")
    group.add_argument(
        "--slo-error-rate", type=float, default=0.01, env_var="LOCUST_SLO_ERROR_RATE",
        help="fail the run when more than this share of requests failed (default 0.01)",
    )  # fmt: skip
    group.add_argument(
        "--slo-p95-ms", type=float, default=1000.0, env_var="LOCUST_SLO_P95_MS",
        help="fail the run when the p95 of the requests after sign-up is above this "
        "(default 1000 ms)",
    )  # fmt: skip


class ShopShape(LoadTestShape):
    """Every run goes through this shape, the plain mode too: it reads --users, --spawn-rate and
    --run-time itself (``use_common_options``) and follows the schedule --shape names."""

    use_common_options = True
    shape = "constant"
    plan: shapes.Plan | None = None

    def tick(self) -> tuple[int, float] | None:
        if self.plan is None:
            return None
        return shapes.target(self.shape, self.plan, self.get_run_time())


def _plan(options: Any) -> shapes.Plan:
    return shapes.Plan(
        users=options.num_users or 1,
        spawn_rate=options.spawn_rate or 1.0,
        run_time=options.run_time or None,
        step_users=options.step_users,
        step_seconds=options.step_seconds,
        spike_base_users=options.spike_base_users,
        spike_start=options.spike_start,
        spike_seconds=options.spike_seconds,
    )


@events.init.add_listener
def _configure(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return
    if not 0 <= options.think_min <= options.think_max:
        sys.exit("--think-min must be at least 0 and at most --think-max")
    try:
        plan = _plan(options)
    except ValueError as exc:
        sys.exit(f"load shape: {exc}")
    if isinstance(environment.shape_class, ShopShape):
        environment.shape_class.shape = options.shape
        environment.shape_class.plan = plan
    if options.headless and environment.host:
        _check_reachable(environment.host)


def _check_reachable(host: str) -> None:
    """A clear word up front instead of a run of connection errors."""
    url = host.rstrip("/") + "/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (the operator's --host)
            resp.read()
    except urllib.error.HTTPError as exc:
        sys.exit(f"{url} answered {exc.code}: the platform is not ready")
    except (urllib.error.URLError, OSError) as exc:
        sys.exit(f"cannot reach {url} ({exc}); is the platform running (make up)?")


@events.quitting.add_listener
def _check_slos(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return
    options = environment.parsed_options
    total = environment.stats.total
    if shed:
        counts = (f"{n} x {status} ({SHED_HINT[status]})" for status, n in sorted(shed.items()))
        log.warning("shed or limited: %s", ", ".join(counts))
    if sold_out:
        log.info(
            "sold out: %s (make reset restores the seeded stock)",
            ", ".join(f"{n} x {where}" for where, n in sorted(sold_out.items())),
        )
    breaches: list[str] = []
    if total.num_requests == 0:
        breaches.append("no request was made")
    error_rate = total.fail_ratio
    p95 = _shopping(environment).get_response_time_percentile(0.95) or 0
    if error_rate > options.slo_error_rate:
        breaches.append(
            f"error rate {error_rate:.2%} of {total.num_requests} requests is above "
            f"--slo-error-rate {options.slo_error_rate:.2%}"
        )
    if p95 > options.slo_p95_ms:
        breaches.append(
            f"p95 {p95:.0f} ms of the requests after sign-up is above --slo-p95-ms "
            f"{options.slo_p95_ms:g} ms"
        )
    if breaches:
        for breach in breaches:
            log.error("SLO not met: %s", breach)
        environment.process_exit_code = 1
        return
    log.info(
        "SLO met: error rate %.2f%% (limit %.2f%%), p95 after sign-up %.0f ms (limit %g ms), "
        "%d requests",
        error_rate * 100,
        options.slo_error_rate * 100,
        p95,
        options.slo_p95_ms,
        total.num_requests,
    )
    runner = environment.runner
    # A journey that raised, or locust's own trouble, still fails the run (locust's defaults).
    if not locust_log.unhandled_greenlet_exception and not (runner and runner.exceptions):
        environment.process_exit_code = 0


def _shopping(environment: Environment) -> StatsEntry:
    """Every request but sign-up and login, merged into one entry for its percentiles."""
    merged = StatsEntry(environment.stats, "after sign-up", "")
    for (name, method), entry in environment.stats.entries.items():
        if (method, name) not in routes.SIGN_UP:
            merged.extend(entry)
    return merged


def _problem(resp: ResponseContextManager) -> str:
    try:
        body = resp.json()
    except (ValueError, TypeError):
        return ""
    kind = body.get("type", "") if isinstance(body, dict) else ""
    return str(kind).rsplit("/", 1)[-1]


def _judge(
    resp: ResponseContextManager, ok: tuple[int, ...], problems: tuple[str, ...] = ()
) -> bool:
    """Mark the answer a success when its status is one the journey expects (or a problem it
    can legitimately meet), else a failure that says what came back. True on success."""
    status = resp.status_code
    if status in ok:
        resp.success()
        return True
    problem = _problem(resp) if status else ""
    if problem and problem in problems:
        resp.success()
        return True
    if status in SHED_HINT:
        shed[status] += 1
    if not status:
        error = getattr(resp, "error", None)
        resp.failure(f"no answer: {type(error).__name__}: {error}")
    elif status in SHED_HINT:
        resp.failure(f"{status} {problem or 'no problem type'}: {SHED_HINT[status]}")
    else:
        resp.failure(f"{status} {problem or 'unexpected answer'} (expected {ok})")
    return False


def _body(resp: ResponseContextManager) -> dict[str, Any] | None:
    """The JSON object of a successful answer; an answer without one fails the request."""
    try:
        body = resp.json()
    except (ValueError, TypeError):
        body = None
    if not isinstance(body, dict):
        resp.failure(f"{resp.status_code} without a JSON object body")
        return None
    return body


def _order_status(status: int, body: dict[str, Any]) -> str:
    # 201 is a finished checkout, 202 one whose charge went through and confirms shortly.
    wanted = {201: ("confirmed",), 202: ("pending", "confirmed")}.get(status)
    if wanted and body.get("status") not in wanted:
        return f"order status {body.get('status')!r}, expected {' or '.join(wanted)}"
    return ""


def _url(path: str, **query: str | int) -> str:
    return f"{path}?{urllib.parse.urlencode(query)}" if query else path


class Shopper(FastHttpUser):
    # Connections are refused fast on loopback; a slow answer is what the p95 is for.
    connection_timeout = 5.0
    network_timeout = 30.0

    def wait_time(self) -> float:
        options = self.environment.parsed_options
        low, high = (options.think_min, options.think_max) if options else (1.0, 4.0)
        return random.uniform(low, high)

    def on_start(self) -> None:
        self.headers: dict[str, str] | None = None
        self.categories: list[str] = []
        self.products: dict[str, int] = {}  # id -> available, as last seen
        self.cart_lines = 0
        self._sign_up()

    # -- requests -----------------------------------------------------------------------------

    def _call(
        self,
        route: Request,
        path: str,
        ok: tuple[int, ...],
        *,
        problems: tuple[str, ...] = (),
        json: Any = None,
        headers: dict[str, str] | None = None,
        check: Callable[[int, dict[str, Any]], str] | None = None,
    ) -> tuple[int, dict[str, Any] | None]:
        """One request named after its route; (status, body) when the answer was expected,
        (status, None) otherwise (already reported as a failure). ``check`` looks into an
        expected answer's body and returns what is wrong with it, if anything."""
        method, name = route
        merged = {**(self.headers or {}), **(headers or {})}
        with self.client.request(
            method, path, name=name, json=json, headers=merged, catch_response=True
        ) as resp:
            if not _judge(resp, ok, problems):
                return resp.status_code, None
            if resp.status_code == 204:
                return 204, {}
            body = _body(resp)
            wrong = check(resp.status_code, body) if check and body is not None else ""
            if wrong:
                resp.failure(f"{resp.status_code} {wrong}")
                return resp.status_code, None
            return resp.status_code, body

    def _sign_up(self) -> bool:
        email = f"load-{uuid.uuid4().hex}@example.com"
        password = uuid.uuid4().hex
        account = {"email": email, "password": password, "name": "Load Shopper"}
        _, created = self._call(routes.REGISTER, routes.REGISTER[1], (201,), json=account)
        if created is None:
            return False
        credentials = {"email": email, "password": password}
        _, token = self._call(routes.LOGIN, routes.LOGIN[1], (200,), json=credentials)
        if token is None or "access_token" not in token:
            return False
        self.headers = {"Authorization": f"Bearer {token['access_token']}"}
        return True

    def _signed_in(self) -> bool:
        # A shopper whose sign-up failed (say, under a spike) tries again when it needs to.
        return self.headers is not None or self._sign_up()

    def _remember(self, page: dict[str, Any]) -> None:
        for item in page.get("items", []):
            if len(self.products) < 500 or item["id"] in self.products:
                self.products[item["id"]] = item["available"]

    # -- journeys -----------------------------------------------------------------------------

    @task(30)
    def browse(self) -> None:
        _, nav = self._call(routes.CATEGORIES, "/api/v1/categories", (200,))
        if nav is not None:
            self.categories = list(nav.get("items", []))
        query: dict[str, str | int] = {"limit": PAGE_SIZE}
        if self.categories and random.random() < 0.4:
            query["category"] = random.choice(self.categories)
        _, page = self._call(routes.BROWSE, _url("/api/v1/products", **query), (200,))
        # Fewer and fewer people go on to the next page.
        for _ in range(2):
            if page is None:
                return
            self._remember(page)
            cursor = page.get("next_cursor")
            if not cursor or random.random() < 0.4:
                return
            path = _url("/api/v1/products", **query, cursor=cursor)
            _, page = self._call(routes.BROWSE_NEXT, path, (200,))

    @task(30)
    def product_page(self) -> dict[str, Any] | None:
        if not self.products:
            self.browse()
            if not self.products:
                return None
        product_id = random.choice(list(self.products))
        _, product = self._call(routes.PRODUCT, f"/api/v1/products/{product_id}", (200,))
        if product is not None:
            self.products[product_id] = product["available"]
        return product

    @task(15)
    def search(self) -> None:
        term = random.choice(SEARCH_TERMS)
        _, page = self._call(routes.SEARCH, _url("/api/v1/products", q=term), (200,))
        if page is not None:
            self._remember(page)

    @task(12)
    def add_to_cart(self) -> None:
        if not self._signed_in():
            return
        # A shopper who lands on a sold-out product looks at another, twice at most.
        for _ in range(3):
            product = self.product_page()
            if product is None:
                return
            if product["available"] > 0:
                break
        else:
            sold_out["product page"] += 1
            return
        quantity = random.randint(1, min(2, product["available"]))
        path = f"/api/v1/cart/items/{product['id']}"
        _, cart = self._call(routes.CART_SET, path, (200,), json={"quantity": quantity})
        if cart is not None:
            self.cart_lines = len(cart.get("items", []))

    @task(6)
    def view_cart(self) -> None:
        if not self._signed_in():
            return
        _, cart = self._call(routes.CART, "/api/v1/cart", (200,))
        if cart is not None:
            self.cart_lines = len(cart.get("items", []))

    @task(4)
    def checkout(self) -> None:
        if not self._signed_in():
            return
        if not self.cart_lines:
            self.add_to_cart()
            if not self.cart_lines:
                return
        declined = random.random() < DECLINE_SHARE
        if declined and self._place_order(DECLINED_CARD) != 402:
            return
        self._place_order(random.choice(CARDS))

    def _place_order(self, card: str) -> int:
        declined = card == DECLINED_CARD
        ok = (402,) if declined else (201, 202)
        status, order = self._call(
            routes.CHECKOUT,
            "/api/v1/orders",
            ok,
            problems=() if declined else (SOLD_OUT,),
            json={"payment_token": card, "shipping_address": SHIPPING},
            # A fresh key per attempt: each one is a new order, never a replay of the last.
            headers={"Idempotency-Key": str(uuid.uuid4())},
            check=_order_status,
        )
        if order is None or declined:
            return status
        if status == 409:
            sold_out["checkout"] += 1
            # The cart is kept on a sold-out checkout; this shopper gives up on it.
            self._call(routes.CART_CLEAR, "/api/v1/cart", (204,))
            self.cart_lines = 0
            return status
        self.cart_lines = 0
        return status

    @task(3)
    def order_history(self) -> None:
        if not self._signed_in():
            return
        _, page = self._call(routes.ORDERS, _url("/api/v1/orders", limit=10), (200,))
        if page and page.get("items"):
            newest = page["items"][0]["id"]
            self._call(routes.ORDER, f"/api/v1/orders/{newest}", (200,))
