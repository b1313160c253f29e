"""Run the gateway: ``python -m shop_gateway.main``."""

from __future__ import annotations

from shopkit import server

from shop_gateway.settings import GatewaySettings


def main() -> None:
    server.main("shop_gateway.app:create_app", GatewaySettings())


if __name__ == "__main__":
    main()
