"""Telemetry suites: each module starts the platform and the real telemetry backend it checks
(Prometheus in test_prometheus.py, an OpenTelemetry Collector in test_traces.py) with fixtures
of its own, so that neither depends on the other's set-up."""
