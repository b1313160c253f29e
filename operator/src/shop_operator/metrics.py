"""The operator's own Prometheus metrics, on a registry of their own."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class OperatorMetrics:
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        self.rollouts = Counter(
            "sweetslice_operator_rollouts",
            "Rollouts that reached a final phase, by outcome (Succeeded, RolledBack, Aborted).",
            ["outcome"],
            registry=self.registry,
        )
        self.analyses = Counter(
            "sweetslice_operator_analyses",
            "Canary analyses run, by verdict (Pass, Fail, Inconclusive).",
            ["verdict"],
            registry=self.registry,
        )
        self.weight = Gauge(
            "sweetslice_operator_rollout_weight_percent",
            "Current canary traffic weight of each rollout, in percent.",
            ["namespace", "rollout"],
            registry=self.registry,
        )

    def forget(self, namespace: str, rollout: str) -> None:
        """Drop a deleted rollout's gauge so it does not linger at its last value."""
        with contextlib.suppress(KeyError):
            self.weight.remove(namespace, rollout)
