"""Entry point: settings from the environment, then kopf in-process with metrics and health."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import kopf
from prometheus_client import start_http_server
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shop_operator.handlers import FINALIZER, GROUP, Runtime, register
from shop_operator.k8s import Kube
from shop_operator.metrics import OperatorMetrics
from shop_operator.prometheus import Prometheus


class OperatorSettings(BaseSettings):
    """SWEETSLICE_OPERATOR_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="SWEETSLICE_OPERATOR_", extra="ignore")

    prometheus_url: str = Field(
        default="http://kube-prometheus-stack-prometheus.monitoring:9090", pattern=r"^https?://"
    )
    tick_seconds: float = Field(default=5.0, gt=0, le=300)
    # Comma-separated; empty watches every namespace.
    namespaces: Annotated[tuple[str, ...], NoDecode] = ()
    health_port: int = Field(default=8080, ge=1, le=65535)
    metrics_port: int = Field(default=9102, ge=1, le=65535)
    host: str = "127.0.0.1"
    # The name of a (Cluster)KopfPeering object; unset runs standalone, without peering.
    peering: str | None = None
    log_level: str = "INFO"

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("peering", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def liveness_endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.health_port}/healthz"


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's own knobs: state in annotations of our group, events only for warnings."""
    ks = kopf.OperatorSettings()
    ks.persistence.finalizer = FINALIZER
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    ks.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Our handlers post their own Events; kopf's log-to-event copies would double them.
    ks.posting.level = logging.WARNING
    ks.networking.request_timeout = 60
    ks.watching.server_timeout = 300
    ks.peering.standalone = settings.peering is None
    return ks


async def run(settings: OperatorSettings, *, stop_flag: asyncio.Event | None = None) -> None:
    """Run the operator until stopped (signal or stop_flag)."""
    metrics = OperatorMetrics()
    start_http_server(settings.metrics_port, addr=settings.host, registry=metrics.registry)
    kube = Kube()
    prometheus = Prometheus()
    registry = kopf.OperatorRegistry()
    register(registry, tick_seconds=settings.tick_seconds)
    memo = kopf.Memo(
        runtime=Runtime(
            kube=kube,
            prometheus=prometheus,
            metrics=metrics,
            prometheus_url=settings.prometheus_url,
        )
    )
    try:
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(settings),
            standalone=settings.peering is None,
            peering_name=settings.peering,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            liveness_endpoint=settings.liveness_endpoint,
            memo=memo,
            stop_flag=stop_flag,
        )
    finally:
        await prometheus.close()
        await kube.close()


def main() -> None:
    settings = OperatorSettings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    asyncio.run(run(settings))
