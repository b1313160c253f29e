"""Run the gateway: ``python -m shop_gateway.main``."""

from __future__ import annotations

from shopkit.server import serve

from shop_gateway.settings import GatewaySettings


def main() -> None:
    serve("shop_gateway.app:create_app", GatewaySettings())


if __name__ == "__main__":
    main()
