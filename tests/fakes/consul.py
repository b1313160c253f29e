"""A FAKE of Consul's HTTP API - the subset Sweet Slice's services use - for tests (issue 7).

This is not Consul. No Consul server can be installed where the tests run, so they talk to this
stand-in, written from Consul's API documentation. It plays one node that is agent and catalog at
once, with its state in memory: services registered on the "local agent", their HTTP checks
(which it really runs, against the URL given), and one raft-like index behind blocking queries on
the health API. ``CONSUL.md`` next to this file links every endpoint to the Consul documentation
it follows and lists where the fake differs from the real thing.

Three ways to run it:

- in-process, in the test's event loop: ``async with FakeConsul() as fake: ... fake.url``;
- as a child process whose death is real, ``FakeConsulProcess``: ``kill()`` (SIGKILL) loses every
  registration, ``restart()`` comes back empty on the same port with a small index again;
- from a shell: ``python -m tests.fakes.consul --port 8500 [--host 127.0.0.1] [--acl-token T]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, MultiMapping
from shopkit.launcher import free_port

from tests.processes import stop_process, wait_until_answering

REPO_ROOT: Final = Path(__file__).resolve().parents[2]

PASSING: Final = "passing"
WARNING: Final = "warning"
CRITICAL: Final = "critical"
STATUSES: Final = (PASSING, WARNING, CRITICAL)

DEFAULT_CHECK_TIMEOUT: Final = 10.0  # agent/check: "Timeout (duration: 10s)"
DEFAULT_WAIT: Final = 300.0  # features/blocking: "the wait time defaults to 5 minutes"
MAX_WAIT: Final = 600.0  # features/blocking: "limited to 10 minutes"
OUTPUT_MAX_SIZE: Final = 4096  # agent/check: "OutputMaxSize (positive int: 4096)"
LEADER: Final = "127.0.0.1:8300"
CHECK_USER_AGENT: Final = "Consul Health Check"
CHECK_ACCEPT: Final = "text/plain, text/*, */*"

# Keys that select a check kind Consul has and the fake does not run, with the kind's name.
UNSUPPORTED_CHECK_KINDS: Final = {
    "Args": "script",
    "ScriptArgs": "script",
    "Script": "script",
    "TCP": "TCP",
    "UDP": "UDP",
    "GRPC": "gRPC",
    "H2PING": "H2PING",
    "TTL": "TTL",
    "DockerContainerID": "Docker",
    "AliasNode": "alias",
    "AliasService": "alias",
    "OSService": "OS service",
}
UNSUPPORTED_CHECK_OPTIONS: Final = (
    "SuccessBeforePassing",
    "FailuresBeforeCritical",
    "FailuresBeforeWarning",
)
UNSUPPORTED_SERVICE_FIELDS: Final = ("Kind", "Proxy", "Connect")
# Query parameters that would change a result; ignoring one silently would answer wrongly.
UNSUPPORTED_QUERY_PARAMS: Final = (
    "filter",
    "node-meta",
    "peer",
    "sameness-group",
    "merge-central-config",
)
_HTTP_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_GO_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class BadRequest(Exception):
    """Answered 400 with the message as plain text, as Consul answers invalid requests."""


# --- Go durations -------------------------------------------------------------------------

_DURATION_UNITS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART: Final = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration``, which Consul uses, in seconds: ``"10s"``, ``"500ms"``,
    ``"1m30s"``, ``"1.5h"``, ``"0"``. Anything else (``"10"``, ``"1x"``, ``""``) is a ValueError."""
    rest = text
    sign = 1.0
    if rest[:1] in ("+", "-"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"time: invalid duration {text!r}")
    total, pos = 0.0, 0
    while pos < len(rest):
        part = _DURATION_PART.match(rest, pos)
        if part is None:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(part[1]) * _DURATION_UNITS[part[2]]
        pos = part.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """Go's ``Duration.String()``, how Consul echoes durations: ``200ms``, ``10s``, ``1m30s``."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_decimal(ns, 1_000)}\u00b5s"
    if ns < 1_000_000_000:
        return f"{sign}{_decimal(ns, 1_000_000)}ms"
    hours, ns = divmod(ns, 3_600_000_000_000)
    minutes, ns = divmod(ns, 60_000_000_000)
    secs = f"{_decimal(ns, 1_000_000_000)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return sign + secs


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:0{len(str(unit)) - 1}d}".rstrip("0")


# --- request bodies -----------------------------------------------------------------------


def _norm(key: str) -> str:
    # Consul matches body keys case-insensitively and accepts snake_case spellings as well.
    return key.replace("_", "").lower()


def _is_set(value: object) -> bool:
    # 0 and false are what a client sends for "not used", so they do not count as set.
    return value is not None and value not in ("", [], {}, 0)


class _Fields:
    """A JSON object read the way Consul decodes request bodies: keys in any case or snake_case.
    Only the structure's own keys are normalised; user data (Meta, Header) keeps its keys."""

    def __init__(self, raw: object, where: str) -> None:
        if not isinstance(raw, dict):
            raise BadRequest(f"Request decode failed: {where} must be a JSON object")
        self._values = {_norm(str(k)): v for k, v in raw.items()}
        self.where = where

    def __bool__(self) -> bool:
        return any(_is_set(v) for v in self._values.values())

    def raw(self, key: str) -> object:
        return self._values.get(_norm(key))

    def is_set(self, key: str) -> bool:
        return _is_set(self.raw(key))

    def error(self, key: str, expected: str) -> BadRequest:
        return BadRequest(f"Request decode failed: {self.where}.{key}: expected {expected}")

    def text(self, key: str) -> str:
        value = self.raw(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.error(key, "a string")
        return value

    def integer(self, key: str) -> int:
        value = self.raw(key)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "an integer")
        return value

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.error(key, "true or false")
        return value

    def texts(self, key: str) -> list[str] | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "a list of strings")
        return list(value)

    def mapping(self, key: str) -> dict[str, str] | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.error(key, "an object of strings")
        return {str(k): v for k, v in value.items()}

    def header(self, key: str) -> dict[str, list[str]]:
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(
            isinstance(v, list) and all(isinstance(item, str) for item in v) for v in value.values()
        ):
            raise self.error(key, "an object of string lists, as in {'X-Name': ['value']}")
        return {str(k): list(v) for k, v in value.items()}

    def duration(self, key: str) -> float | None:
        value = self.raw(key)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except ValueError as exc:
                raise BadRequest(f"Request decode failed: {self.where}.{key}: {exc}") from exc
        if isinstance(value, int) and not isinstance(value, bool):
            return value / 1e9  # a JSON number is a Go time.Duration: nanoseconds
        raise self.error(key, 'a duration string such as "10s"')

    def obj(self, key: str) -> _Fields | None:
        value = self.raw(key)
        return None if value is None else _Fields(value, f"{self.where}.{key}")

    def objs(self, key: str) -> list[_Fields]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, "a list of objects")
        return [_Fields(v, f"{self.where}.{key}[{i}]") for i, v in enumerate(value)]


@dataclass(frozen=True)
class CheckDefinition:
    """An HTTP check as registered; compared whole to tell a changed definition from a repeat."""

    check_id: str
    name: str
    http: str
    method: str
    header: dict[str, list[str]]
    body: str
    interval: float
    timeout: float
    deregister_after: float | None
    tls_skip_verify: bool
    notes: str
    initial_status: str


@dataclass(frozen=True)
class ServiceDefinition:
    service_id: str
    name: str
    tags: list[str] | None
    address: str
    port: int
    meta: dict[str, str] | None
    weights: dict[str, int]
    tagged_addresses: dict[str, Any] | None
    enable_tag_override: bool


def parse_registration(payload: object) -> tuple[ServiceDefinition, list[CheckDefinition]]:
    """The body of ``PUT /v1/agent/service/register``; BadRequest says what is wrong with it."""
    fields = _Fields(payload, "service")
    for key in UNSUPPORTED_SERVICE_FIELDS:
        if fields.is_set(key):
            raise BadRequest(f"Invalid service: {key} is not supported by this fake Consul")
    name = fields.text("Name")
    if not name:
        raise BadRequest("Missing service name")
    service_id = fields.text("ID") or name
    weights = fields.obj("Weights")
    tagged = fields.raw("TaggedAddresses")
    if tagged is not None and not isinstance(tagged, dict):
        raise fields.error("TaggedAddresses", "an object")
    service = ServiceDefinition(
        service_id=service_id,
        name=name,
        tags=fields.texts("Tags"),
        address=fields.text("Address"),
        port=fields.integer("Port"),
        meta=fields.mapping("Meta"),
        weights={
            "Passing": (weights.integer("Passing") if weights else 0) or 1,
            "Warning": (weights.integer("Warning") if weights else 0) or 1,
        },
        tagged_addresses=tagged,
        enable_tag_override=fields.flag("EnableTagOverride"),
    )
    single = fields.obj("Check")
    given = [c for c in ([single] if single is not None else []) + fields.objs("Checks") if c]
    checks: list[CheckDefinition] = []
    for position, check in enumerate(given, start=1):
        default_id = f"service:{service_id}" + (f":{position}" if len(given) > 1 else "")
        definition = _check_definition(check, default_id, f"Service '{name}' check")
        if any(c.check_id == definition.check_id for c in checks):
            raise BadRequest(f"Invalid check: CheckID {definition.check_id!r} is given twice")
        checks.append(definition)
    return service, checks


def _check_definition(fields: _Fields, default_id: str, default_name: str) -> CheckDefinition:
    for key, kind in UNSUPPORTED_CHECK_KINDS.items():
        if fields.is_set(key):
            raise BadRequest(
                f"Invalid check: {kind} checks are not supported by this fake Consul "
                "(it runs HTTP checks only)"
            )
    for key in UNSUPPORTED_CHECK_OPTIONS:
        if fields.is_set(key):
            raise BadRequest(f"Invalid check: {key} is not supported by this fake Consul")
    url = fields.text("HTTP")
    if not url:
        raise BadRequest("Invalid check: no HTTP URL (this fake Consul runs HTTP checks only)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"Invalid check: HTTP must be an http(s) URL, not {url!r}")
    interval = fields.duration("Interval")
    if interval is None or interval <= 0:
        raise BadRequest("Invalid check: Interval must be > 0 for HTTP checks")
    timeout = fields.duration("Timeout")
    if timeout is not None and timeout < 0:
        raise BadRequest("Invalid check: Timeout must be >= 0")
    deregister_after = fields.duration("DeregisterCriticalServiceAfter")
    status = fields.text("Status") or CRITICAL
    if status not in STATUSES:
        raise BadRequest("Invalid check: Status must be 'passing', 'warning' or 'critical'")
    method = fields.text("Method") or "GET"
    if not _HTTP_TOKEN.fullmatch(method):
        raise BadRequest(f"Invalid check: Method {method!r} is not an HTTP method")
    return CheckDefinition(
        check_id=fields.text("CheckID") or fields.text("ID") or default_id,
        name=fields.text("Name") or default_name,
        http=url,
        method=method,
        header=fields.header("Header"),
        body=fields.text("Body"),
        interval=interval,
        timeout=timeout or DEFAULT_CHECK_TIMEOUT,
        deregister_after=deregister_after if deregister_after and deregister_after > 0 else None,
        tls_skip_verify=fields.flag("TLSSkipVerify"),
        notes=fields.text("Notes"),
        initial_status=status,
    )


# --- the node's state ---------------------------------------------------------------------


@dataclass
class _Check:
    definition: CheckDefinition
    service_id: str
    status: str
    output: str
    critical_since: float | None
    create_index: int
    modify_index: int
    runner: asyncio.Task[None] | None = None


@dataclass
class _Service:
    definition: ServiceDefinition
    check_ids: list[str]
    create_index: int
    modify_index: int


class _Node:
    """Agent and catalog of the one node, with the raft-like index every change moves."""

    def __init__(self, name: str, address: str, datacenter: str) -> None:
        self.name = name
        self.address = address
        self.datacenter = datacenter
        self.node_id = str(uuid.uuid4())
        # The node's own registration is the first write: an index is never 0.
        self.index = 1
        self.catalog_index = 1
        self.services: dict[str, _Service] = {}
        self.checks: dict[str, _Check] = {}
        self.blocked = 0
        self.closing = False
        self._name_index: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._runners: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        # Consul's HTTP checks do not keep connections alive: each run dials afresh, so a
        # service that went away is seen at once as a refused connection.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))

    async def close(self) -> None:
        self.closing = True
        self._wake()
        runners = list(self._runners)
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # index and blocking

    def name_index(self, name: str) -> int:
        """The index of the last change to any instance of ``name``; for a name never seen, the
        whole store's index (real Consul too answers missing services with a table's index)."""
        return self._name_index.get(name, self.index)

    def _bump(self, *names: str) -> int:
        self.index += 1
        for name in names:
            self._name_index[name] = self.index
        self._wake()
        return self.index

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_past(self, index_of: Callable[[], int], min_index: int, wait: float) -> None:
        """Until ``index_of()`` moves past ``min_index``, ``wait`` elapses or the fake stops."""
        self.blocked += 1
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    while index_of() <= min_index and not self.closing:
                        await self._changed.wait()
        finally:
            self.blocked -= 1

    # registrations

    def register(
        self,
        service: ServiceDefinition,
        checks: list[CheckDefinition],
        *,
        replace_existing_checks: bool,
    ) -> None:
        existing = self.services.get(service.service_id)
        new_ids = [c.check_id for c in checks]
        old_ids = existing.check_ids if existing else []
        dropped = [cid for cid in old_ids if cid not in new_ids and replace_existing_checks]
        kept = [cid for cid in old_ids if cid not in new_ids and not replace_existing_checks]
        service_changed = existing is None or existing.definition != service
        replaced = [self.checks.get(c.check_id) for c in checks]
        checks_changed = any(
            old is None or old.definition != new or old.service_id != service.service_id
            for old, new in zip(replaced, checks, strict=True)
        )
        # A check ID is unique on the node: one taken over from another service changes that one.
        names = {service.name} | ({existing.definition.name} if existing else set())
        names |= {
            self.services[old.service_id].definition.name
            for old in replaced
            if old is not None and old.service_id in self.services
        }
        # Writing what is already there changes nothing, so it wakes no watcher.
        changed = service_changed or bool(dropped) or checks_changed
        index = self._bump(*sorted(names)) if changed else self.index
        if service_changed:
            self.catalog_index = index
        for cid in dropped:
            self._drop_check(cid)
        now = time.monotonic()
        for definition in checks:
            old = self.checks.pop(definition.check_id, None)
            if old is not None:
                self._stop_runner(old)
                owner = self.services.get(old.service_id)
                if owner is not None and old.service_id != service.service_id:
                    owner.check_ids.remove(definition.check_id)
            if old is not None:
                # Consul keeps a re-registered check's status, so re-registering never flaps.
                status, output, since = old.status, old.output, old.critical_since
            else:
                status, output = definition.initial_status, ""
                since = now if status == CRITICAL else None
            self.checks[definition.check_id] = _Check(
                definition=definition,
                service_id=service.service_id,
                status=status,
                output=output,
                critical_since=since,
                create_index=old.create_index if old else index,
                modify_index=(
                    index if old is None or old.definition != definition else old.modify_index
                ),
            )
        self.services[service.service_id] = _Service(
            definition=service,
            check_ids=new_ids + kept,
            create_index=existing.create_index if existing else index,
            modify_index=index if service_changed or existing is None else existing.modify_index,
        )
        for definition in checks:
            self._start_runner(self.checks[definition.check_id])

    def deregister(self, service_id: str) -> bool:
        service = self.services.pop(service_id, None)
        if service is None:
            return False
        for cid in service.check_ids:
            self._drop_check(cid)
        self.catalog_index = self._bump(service.definition.name)
        return True

    def _drop_check(self, check_id: str) -> None:
        check = self.checks.pop(check_id, None)
        if check is not None:
            self._stop_runner(check)

    # running checks

    def _start_runner(self, check: _Check) -> None:
        task = asyncio.create_task(self._run(check), name=f"check {check.definition.check_id}")
        check.runner = task
        self._runners.add(task)
        task.add_done_callback(self._runners.discard)

    @staticmethod
    def _stop_runner(check: _Check) -> None:
        # A reaping runner deregisters its own service; it ends by returning, not by cancel.
        if check.runner is not None and check.runner is not asyncio.current_task():
            check.runner.cancel()

    async def _run(self, check: _Check) -> None:
        definition = check.definition
        # Consul staggers a check's first run randomly over one interval.
        await asyncio.sleep(random.uniform(0, definition.interval))
        while True:
            status, output = await self._probe(definition)
            if self.checks.get(definition.check_id) is not check:
                return
            self._record(check, status, output)
            if self._due_for_reaping(check):
                self.deregister(check.service_id)
                return
            await asyncio.sleep(definition.interval)

    async def _probe(self, definition: CheckDefinition) -> tuple[str, str]:
        assert self._session is not None, "open() was not called"
        headers: CIMultiDict[str] = CIMultiDict()
        for name, values in definition.header.items():
            for value in values:
                headers.add(name, value)
        headers.setdefault("User-Agent", CHECK_USER_AGENT)
        headers.setdefault("Accept", CHECK_ACCEPT)
        target = f"{definition.method} {definition.http}"
        try:
            async with self._session.request(
                definition.method,
                definition.http,
                headers=headers,
                data=definition.body or None,
                timeout=aiohttp.ClientTimeout(total=definition.timeout),
                ssl=not definition.tls_skip_verify,
            ) as resp:
                body = (await resp.content.read(OUTPUT_MAX_SIZE)).decode("utf-8", "replace")
        except TimeoutError:
            return CRITICAL, f"{target}: no answer within {format_duration(definition.timeout)}"
        except Exception as exc:  # any failure to get an answer leaves the check critical
            return CRITICAL, f"{target}: {type(exc).__name__}: {exc}"
        output = f"HTTP {target}: {resp.status} {resp.reason} Output: {body}"
        if 200 <= resp.status < 300:
            return PASSING, output
        if resp.status == 429:
            return WARNING, output
        return CRITICAL, output

    def _record(self, check: _Check, status: str, output: str) -> None:
        # The output alone changing is not a change here (Consul syncs such output lazily).
        check.output = output
        if status == check.status:
            return
        check.status = status
        check.critical_since = time.monotonic() if status == CRITICAL else None
        service = self.services.get(check.service_id)
        names = (service.definition.name,) if service is not None else ()
        check.modify_index = self._bump(*names)

    @staticmethod
    def _due_for_reaping(check: _Check) -> bool:
        after = check.definition.deregister_after
        since = check.critical_since
        return after is not None and since is not None and time.monotonic() - since > after

    # views

    def node_json(self) -> dict[str, Any]:
        return {
            "ID": self.node_id,
            "Node": self.name,
            "Address": self.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": {
                "lan": self.address,
                "lan_ipv4": self.address,
                "wan": self.address,
                "wan_ipv4": self.address,
            },
            "Meta": {"consul-network-segment": ""},
            "CreateIndex": 1,
            "ModifyIndex": 1,
        }

    def serf_health_json(self) -> dict[str, Any]:
        return {
            "Node": self.name,
            "CheckID": "serfHealth",
            "Name": "Serf Health Status",
            "Status": PASSING,
            "Notes": "",
            "Output": "Agent alive and reachable",
            "ServiceID": "",
            "ServiceName": "",
            "ServiceTags": [],
            "Type": "",
            "Interval": "",
            "Timeout": "",
            "ExposedPort": 0,
            "Definition": {},
            "CreateIndex": 1,
            "ModifyIndex": 1,
        }

    def service_json(self, service: _Service, *, health: bool) -> dict[str, Any]:
        d = service.definition
        out: dict[str, Any] = {
            "ID": d.service_id,
            "Service": d.name,
            # The health endpoint turns absent tags into []; the agent's endpoints give null.
            "Tags": (d.tags or []) if health else d.tags,
            "Meta": d.meta,
            "Port": d.port,
            "Address": d.address,
            "Weights": d.weights,
            "EnableTagOverride": d.enable_tag_override,
        }
        if d.tagged_addresses is not None:
            out["TaggedAddresses"] = d.tagged_addresses
        if health:
            out["CreateIndex"] = service.create_index
            out["ModifyIndex"] = service.modify_index
        else:
            out["Datacenter"] = self.datacenter
        return out

    def check_json(self, check: _Check, *, health: bool) -> dict[str, Any]:
        d = check.definition
        service = self.services.get(check.service_id)
        out: dict[str, Any] = {
            "Node": self.name,
            "CheckID": d.check_id,
            "Name": d.name,
            "Status": check.status,
            "Notes": d.notes,
            "Output": check.output,
            "ServiceID": check.service_id,
            "ServiceName": service.definition.name if service else "",
            "ServiceTags": (service.definition.tags or []) if service else [],
            "Type": "http",
            "Interval": format_duration(d.interval),
            "Timeout": format_duration(d.timeout),
            "ExposedPort": 0,
            "Definition": {
                "HTTP": d.http,
                "Header": d.header or None,
                "Method": d.method,
                "Body": d.body,
                "TLSSkipVerify": d.tls_skip_verify,
                "Interval": format_duration(d.interval),
                "Timeout": format_duration(d.timeout),
                "DeregisterCriticalServiceAfter": format_duration(d.deregister_after or 0),
            },
        }
        if health:
            out["CreateIndex"] = check.create_index
            out["ModifyIndex"] = check.modify_index
        return out

    def health_entries(self, name: str, *, tags: list[str], passing: bool) -> list[dict[str, Any]]:
        entries = []
        for service_id in sorted(self.services):
            service = self.services[service_id]
            if service.definition.name != name:
                continue
            # Consul compares tags without regard to case.
            own_tags = {tag.lower() for tag in service.definition.tags or []}
            if not all(tag.lower() in own_tags for tag in tags):
                continue
            checks = [self.serf_health_json()] + [
                self.check_json(self.checks[cid], health=True)
                for cid in service.check_ids
                if cid in self.checks
            ]
            # "passing": every check passing; a warning counts as not passing.
            if passing and any(c["Status"] != PASSING for c in checks):
                continue
            entries.append(
                {
                    "Node": self.node_json(),
                    "Service": self.service_json(service, health=True),
                    "Checks": checks,
                }
            )
        return entries

    def catalog_services(self) -> dict[str, list[str]]:
        tags: dict[str, set[str]] = {}
        for service in self.services.values():
            tags.setdefault(service.definition.name, set()).update(service.definition.tags or [])
        return {name: sorted(tags[name]) for name in sorted(tags)}


# --- HTTP ---------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(
    payload: object, *, headers: Mapping[str, str] | None = None, pretty: bool = False
) -> web.Response:
    return web.Response(
        text=json.dumps(payload, indent=4 if pretty else None),
        content_type="application/json",
        headers=headers,
    )


def _text(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=message, content_type="text/plain", headers=headers)


def _bool_param(query: MultiMapping[str], key: str, error: str) -> bool:
    """Go's strconv.ParseBool, and a bare ``?key`` is true: Consul's reading of ``?passing``."""
    if key not in query:
        return False
    value = query.get(key, "")
    if value == "" or value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise BadRequest(error)


def _blocking_params(query: MultiMapping[str]) -> tuple[int, float]:
    """``index`` and ``wait``; the wait includes Consul's jitter of up to wait/16."""
    wait = DEFAULT_WAIT
    wait_text = query.get("wait", "")
    if wait_text:
        try:
            wait = parse_duration(wait_text)
        except ValueError as exc:
            raise BadRequest("Invalid wait time") from exc
    if wait <= 0:
        wait = DEFAULT_WAIT
    wait = min(wait, MAX_WAIT)
    index_text = query.get("index", "")
    if index_text and not (index_text.isascii() and index_text.isdigit()):
        raise BadRequest("Invalid index")
    return int(index_text or 0), wait + random.uniform(0, wait / 16)


def _request_token(request: web.Request) -> str | None:
    """The token the way Consul reads it: ``?token``, then X-Consul-Token, then a Bearer."""
    token = request.query.get("token") or request.headers.get("X-Consul-Token")
    if not token:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.split()[0]
    return token or None


def _unknown_service(service_id: str) -> web.Response:
    return _text(
        404,
        f'Unknown service ID "{service_id}". Ensure that the service ID is passed, '
        "not the service name.",
    )


class FakeConsul:
    """The FAKE Consul in this process's event loop: ``await start()`` ... ``await stop()``, or
    ``async with``. ``index`` and ``blocked_queries`` let tests wait on it without sleeping."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        acl_token: str | None = None,
        node_name: str = "fake-consul",
        datacenter: str = "dc1",
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port()
        self.acl_token = acl_token or None
        self._node_args = (node_name, host, datacenter)
        self.node = _Node(*self._node_args)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def index(self) -> int:
        return self.node.index

    @property
    def blocked_queries(self) -> int:
        """Requests now held by a blocking query."""
        return self.node.blocked

    async def start(self) -> None:
        """Starts answering; started again after ``stop()`` it is empty, like a restarted agent
        without a data dir."""
        if self.node.closing:
            self.node = _Node(*self._node_args)
        await self.node.open()
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        # Checks stop and blocked queries are answered first, so the server can close at once.
        await self.node.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_put("/v1/agent/service/register", self._register)
        r.add_put("/v1/agent/service/deregister/{service_id:.+}", self._deregister)
        r.add_get("/v1/agent/service/{service_id:.+}", self._service, allow_head=False)
        r.add_get("/v1/agent/services", self._services, allow_head=False)
        r.add_get("/v1/agent/checks", self._checks, allow_head=False)
        r.add_get("/v1/health/service/", self._missing_service_name, allow_head=False)
        r.add_get("/v1/health/service/{name:.+}", self._health_service, allow_head=False)
        r.add_get("/v1/catalog/services", self._catalog_services, allow_head=False)
        r.add_get("/v1/status/leader", self._leader, allow_head=False)
        r.add_get("/v1/status/peers", self._peers, allow_head=False)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        routing = request.match_info.http_exception
        if isinstance(routing, web.HTTPMethodNotAllowed):
            return self._method_not_allowed(request.method, routing.allowed_methods)
        if routing is not None:
            return _text(404, "404 page not found")
        denied = self._acl_denial(request)
        if denied is not None:
            return denied
        try:
            return await handler(request)
        except BadRequest as exc:
            return _text(400, str(exc))
        except web.HTTPMethodNotAllowed as exc:
            return self._method_not_allowed(request.method, exc.allowed_methods)

    @staticmethod
    def _method_not_allowed(method: str, allowed: set[str]) -> web.Response:
        return _text(405, f"method {method} not allowed", {"Allow": ",".join(sorted(allowed))})

    def _acl_denial(self, request: web.Request) -> web.Response | None:
        # Consul's status endpoints need no ACL at all; everything else here does.
        if self.acl_token is None or request.path.startswith("/v1/status/"):
            return None
        token = _request_token(request)
        if token is None:
            return _text(
                403,
                "Permission denied: anonymous token lacks permission for this request. The "
                "anonymous token is used implicitly when a request does not specify a token.",
            )
        if not hmac.compare_digest(token.encode(), self.acl_token.encode()):
            return _text(403, "ACL not found")
        return None

    def _wrong_datacenter(self, request: web.Request) -> web.Response | None:
        dc = request.query.get("dc", "")
        if dc and dc != self.node.datacenter:
            return _text(500, "No path to datacenter")
        return None

    @staticmethod
    def _refuse_unsupported(request: web.Request) -> None:
        for key in UNSUPPORTED_QUERY_PARAMS:
            if key in request.query:
                raise BadRequest(f"?{key} is not supported by this fake Consul")

    def _query_meta(self, index: int) -> dict[str, str]:
        return {
            "X-Consul-Index": str(index),
            "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0",
        }

    # handlers

    async def _register(self, request: web.Request) -> web.StreamResponse:
        replace = _bool_param(
            request.query, "replace-existing-checks", "Invalid value for ?replace-existing-checks"
        )
        text = await request.text()
        if not text.strip():
            raise BadRequest("Request decode failed: EOF")
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"Request decode failed: {exc}") from exc
        service, checks = parse_registration(payload)
        self.node.register(service, checks, replace_existing_checks=replace)
        return web.Response()

    async def _deregister(self, request: web.Request) -> web.StreamResponse:
        service_id = request.match_info["service_id"]
        if not self.node.deregister(service_id):
            return _unknown_service(service_id)
        return web.Response()

    async def _service(self, request: web.Request) -> web.StreamResponse:
        service_id = request.match_info["service_id"]
        # These are PUT endpoints whose path the GET route's pattern also matches.
        if service_id == "register" or service_id.startswith(("deregister/", "maintenance/")):
            raise web.HTTPMethodNotAllowed(request.method, ["PUT"])
        if "hash" in request.query:
            raise BadRequest("?hash (hash-based blocking) is not supported by this fake Consul")
        service = self.node.services.get(service_id)
        if service is None:
            return _unknown_service(service_id)
        body = self.node.service_json(service, health=False)
        content_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        body["ContentHash"] = content_hash
        return _json(
            body, headers={"X-Consul-ContentHash": content_hash}, pretty="pretty" in request.query
        )

    async def _services(self, request: web.Request) -> web.StreamResponse:
        self._refuse_unsupported(request)
        services = {
            sid: self.node.service_json(self.node.services[sid], health=False)
            for sid in sorted(self.node.services)
        }
        return _json(services, pretty="pretty" in request.query)

    async def _checks(self, request: web.Request) -> web.StreamResponse:
        self._refuse_unsupported(request)
        checks = {
            cid: self.node.check_json(self.node.checks[cid], health=False)
            for cid in sorted(self.node.checks)
        }
        return _json(checks, pretty="pretty" in request.query)

    async def _missing_service_name(self, _: web.Request) -> web.StreamResponse:
        return _text(400, "Missing service name")

    async def _health_service(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        wrong_dc = self._wrong_datacenter(request)
        if wrong_dc is not None:
            return wrong_dc
        self._refuse_unsupported(request)
        query = request.query
        passing = _bool_param(query, "passing", "Invalid value for ?passing")
        tags = query.getall("tag", [])
        min_index, wait = _blocking_params(query)
        if min_index:
            await self.node.wait_past(lambda: self.node.name_index(name), min_index, wait)
        entries = self.node.health_entries(name, tags=tags, passing=passing)
        return _json(
            entries,
            headers=self._query_meta(self.node.name_index(name)),
            pretty="pretty" in query,
        )

    async def _catalog_services(self, request: web.Request) -> web.StreamResponse:
        wrong_dc = self._wrong_datacenter(request)
        if wrong_dc is not None:
            return wrong_dc
        self._refuse_unsupported(request)
        min_index, wait = _blocking_params(request.query)
        if min_index:
            await self.node.wait_past(lambda: self.node.catalog_index, min_index, wait)
        return _json(
            self.node.catalog_services(),
            headers=self._query_meta(self.node.catalog_index),
            pretty="pretty" in request.query,
        )

    async def _leader(self, _: web.Request) -> web.StreamResponse:
        return _json(LEADER)

    async def _peers(self, _: web.Request) -> web.StreamResponse:
        return _json([LEADER])


# --- as a process -------------------------------------------------------------------------


class FakeConsulProcess:
    """The FAKE Consul as a child process, so that taking it down is real: ``kill()`` is SIGKILL
    and loses every registration (a dev agent without a data dir), ``restart()`` brings it back
    empty on the same port, its index small again. The methods block while they poll the child
    (well under a second), so from async code they stall the event loop that long."""

    def __init__(
        self,
        port: int | None = None,
        *,
        acl_token: str | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.acl_token = acl_token
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15) -> None:
        """Starts the child and returns once it answers ``/v1/status/leader``."""
        if self.running:
            raise RuntimeError(f"the fake Consul on port {self.port} is already running")
        argv = [sys.executable, "-m", "tests.fakes.consul", "--port", str(self.port)]
        if self.acl_token:
            argv += ["--acl-token", self.acl_token]
        with contextlib.ExitStack() as stack:
            # Without a log file its output goes where ours goes (pytest captures it).
            log = stack.enter_context(self.log_path.open("ab")) if self.log_path else None
            self._proc = subprocess.Popen(
                argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        wait_until_answering(
            self._proc,
            f"{self.url}/v1/status/leader",
            what="the fake Consul",
            timeout=timeout,
            log_path=self.log_path,
        )

    def kill(self) -> None:
        """SIGKILL: no goodbye, every registration and the index are gone."""
        stop_process(self._proc, grace=0)

    def restart(self, timeout: float = 15) -> None:
        """Killed (if it runs) and started again, empty, on the same port."""
        self.kill()
        self.start(timeout)

    def stop(self) -> None:
        stop_process(self._proc)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


# --- command line -------------------------------------------------------------------------


async def _serve(host: str, port: int, acl_token: str | None) -> None:
    fake = FakeConsul(host=host, port=port, acl_token=acl_token)
    await fake.start()
    print(f"FAKE Consul (tests only) answering on {fake.url}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.consul",
        description="A FAKE of the subset of Consul's HTTP API Sweet Slice uses, for tests only "
        "(see tests/fakes/CONSUL.md).",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--acl-token", default=None, help="refuse requests without this token")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.acl_token))


if __name__ == "__main__":
    main()
