"""Entry point: ``python -m shop_order.main``."""

from __future__ import annotations

from shopkit.server import serve

from shop_order.settings import OrderSettings


def main() -> None:
    serve("shop_order.app:create_app", OrderSettings())


if __name__ == "__main__":
    main()
