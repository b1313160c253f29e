"""The operator's only Kubernetes API client: Deployments and Events over httpx.

It uses the credentials kopf's login handler found (service account in the cluster, else the
kubeconfig), so the operator and kopf act as the same identity.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import tempfile
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import kopf

log = logging.getLogger(__name__)

COMPONENT = "sweetslice-rollout-operator"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """The API server refused a request or could not be reached."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"{status or 'no response'}: {message}")
        self.status = status


def _decode(data: str | bytes) -> bytes:
    """Inline kubeconfig data (`*-data` fields) is base64 of the PEM text."""
    return base64.b64decode(data.encode() if isinstance(data, str) else data)


def _write_secret_file(directory: str, name: str, data: str | bytes) -> str:
    """A kubeconfig's inline certificate or key as a file, since ssl only loads files."""
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_decode(data))
    return path


def ssl_context(info: kopf.ConnectionInfo, directory: str) -> ssl.SSLContext | bool:
    """TLS settings from kopf's connection info: CA, client certificate, or verification off."""
    if info.insecure:
        return False
    ctx = ssl.create_default_context(cafile=info.ca_path)
    if info.ca_data:
        ctx.load_verify_locations(cadata=_decode(info.ca_data).decode("ascii"))
    cert = info.certificate_path
    key = info.private_key_path
    if info.certificate_data:
        cert = _write_secret_file(directory, "client.crt", info.certificate_data)
    if info.private_key_data:
        key = _write_secret_file(directory, "client.key", info.private_key_data)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def _headers(info: kopf.ConnectionInfo) -> dict[str, str]:
    if info.token:
        return {"Authorization": f"{info.scheme or 'Bearer'} {info.token}"}
    if info.username and info.password:
        pair = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


class Kube:
    """Deployments and Events in the namespaces of the rollouts; nothing else."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="shop-operator-")

    async def connect(self, info: kopf.ConnectionInfo) -> None:
        """(Re)build the client from fresh credentials; called from kopf's login handler."""
        old = self._client
        self._client = httpx.AsyncClient(
            base_url=info.server.rstrip("/"),
            verify=ssl_context(info, self._dir.name),
            headers={**_headers(info), "Accept": "application/json"},
            timeout=httpx.Timeout(self._timeout, connect=5.0),
        )
        if old is not None:
            await old.aclose()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._dir.cleanup()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        if self._client is None:
            raise ApiError(None, "not logged in to the API server yet")
        try:
            return await self._client.request(
                method,
                path,
                json=body,
                params=params,
                headers={"Content-Type": content_type} if body is not None else None,
            )
        except httpx.HTTPError as exc:
            raise ApiError(None, f"{method} {path}: {exc!r}") from exc

    @staticmethod
    def _check(response: httpx.Response) -> dict[str, Any]:
        if not response.is_success:
            raise ApiError(
                response.status_code,
                f"{response.request.method} {response.request.url.path}: {response.text[:500]}",
            )
        if not response.content:
            return {}
        data = response.json()
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _deployment_path(namespace: str, name: str | None = None) -> str:
        base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        return base if name is None else f"{base}/{name}"

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        response = await self._request("GET", self._deployment_path(namespace, name))
        if response.status_code == 404:
            return None
        return self._check(response)

    async def apply_canary(self, namespace: str, manifest: Mapping[str, Any]) -> None:
        """Create the canary, or bring the existing one to the manifest (create-or-patch).

        A selector is immutable: a canary whose selector no longer matches (the stable one
        changed) is deleted, and the next tick creates it afresh.
        """
        name = manifest["metadata"]["name"]
        response = await self._request("POST", self._deployment_path(namespace), body=manifest)
        if response.status_code != 409:
            self._check(response)
            return
        existing = await self.get_deployment(namespace, name)
        if (
            existing is not None
            and (existing.get("spec") or {}).get("selector") != manifest["spec"]["selector"]
        ):
            await self.delete_deployment(namespace, name)
            raise ApiError(409, f"canary {name} had another selector; deleted to be recreated")
        patch = {
            "metadata": {
                "labels": manifest["metadata"]["labels"],
                "ownerReferences": manifest["metadata"]["ownerReferences"],
            },
            "spec": {k: v for k, v in manifest["spec"].items() if k != "selector"},
        }
        response = await self._request(
            "PATCH", self._deployment_path(namespace, name), body=patch, content_type=MERGE_PATCH
        )
        self._check(response)

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        response = await self._request(
            "PATCH",
            self._deployment_path(namespace, name),
            body={"spec": {"replicas": replicas}},
            content_type=MERGE_PATCH,
        )
        self._check(response)

    async def patch_deployment(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        response = await self._request(
            "PATCH", self._deployment_path(namespace, name), body=patch, content_type=MERGE_PATCH
        )
        self._check(response)

    async def delete_deployment(self, namespace: str, name: str) -> bool:
        """Delete (its pods go with it, in the background); False when it was already gone."""
        response = await self._request(
            "DELETE",
            self._deployment_path(namespace, name),
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
        )
        if response.status_code == 404:
            return False
        self._check(response)
        return True

    async def post_event(
        self,
        involved: Mapping[str, Any],
        *,
        type_: str,
        reason: str,
        message: str,
    ) -> None:
        """A core/v1 Event about a ServiceRollout, as `kubectl describe` shows them."""
        meta = involved.get("metadata") or {}
        namespace = meta["namespace"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta["name"],
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": os.environ.get("HOSTNAME", COMPONENT),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        response = await self._request("POST", f"/api/v1/namespaces/{namespace}/events", body=event)
        self._check(response)
