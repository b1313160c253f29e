"""Entry point: ``python -m shop_product.main`` serves; ``... main migrate`` migrates and exits."""

from __future__ import annotations

from pathlib import Path

from shopkit import server

from shop_product.settings import ProductSettings


def main() -> None:
    server.main(
        "shop_product.app:create_app",
        ProductSettings(),
        migrations=Path(__file__).with_name("migrations"),
    )


if __name__ == "__main__":
    main()
