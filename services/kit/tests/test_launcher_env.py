"""``make up`` passes the caller's per-service settings on, but never lets one move a process."""

from __future__ import annotations

from pathlib import Path

from shopkit.launcher import Platform, PlatformConfig, caller_settings


def test_the_callers_service_settings_reach_that_service_only(tmp_path: Path) -> None:
    config = PlatformConfig.ephemeral(tmp_path)
    environ = {
        "SWEETSLICE_GATEWAY_RATE_LIMIT_PER_SECOND": "0",
        "SWEETSLICE_ORDER_SAGA_TIMEOUT_SECONDS": "7",
        # The launcher's own choices: a stray value must not move the gateway or its data.
        "SWEETSLICE_GATEWAY_PORT": "1",
        "SWEETSLICE_ORDER_DATA_DIR": "/elsewhere",
        "SWEETSLICE_ORDER_PAYMENT_URL": "http://127.0.0.1:1",
        "SWEETSLICE_ADMIN_EMAIL": "not-a-service-setting@example.com",
        "PATH": "/usr/bin",
    }
    found = caller_settings(config, environ)
    assert found == {
        "gateway": {"SWEETSLICE_GATEWAY_RATE_LIMIT_PER_SECOND": "0"},
        "order": {"SWEETSLICE_ORDER_SAGA_TIMEOUT_SECONDS": "7"},
    }

    config.extra_env = found
    children = Platform(config).children
    gateway = children["gateway"].env
    assert gateway["SWEETSLICE_GATEWAY_RATE_LIMIT_PER_SECOND"] == "0"
    assert gateway["SWEETSLICE_GATEWAY_PORT"] == str(config.ports["gateway"])
    assert "SWEETSLICE_ORDER_SAGA_TIMEOUT_SECONDS" not in gateway
    order = children["order"].env
    assert order["SWEETSLICE_ORDER_SAGA_TIMEOUT_SECONDS"] == "7"
    assert order["SWEETSLICE_ORDER_PAYMENT_URL"] == config.url("payment")
    assert order["SWEETSLICE_ORDER_DATA_DIR"] == str(tmp_path.resolve())
