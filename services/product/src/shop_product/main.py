"""Entry point: ``python -m shop_product.main``."""

from __future__ import annotations

from shopkit.server import serve

from shop_product.settings import ProductSettings


def main() -> None:
    serve("shop_product.app:create_app", ProductSettings())


if __name__ == "__main__":
    main()
