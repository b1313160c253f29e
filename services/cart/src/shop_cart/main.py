"""Entry point: ``python -m shop_cart.main``."""

from __future__ import annotations

from shopkit.server import serve

from shop_cart.settings import CartSettings


def main() -> None:
    serve("shop_cart.app:create_app", CartSettings())


if __name__ == "__main__":
    main()
