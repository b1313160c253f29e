"""Entry point: ``python -m shop_order.main`` serves; ``... main migrate`` migrates and exits."""

from __future__ import annotations

from pathlib import Path

from shopkit import server

from shop_order.settings import OrderSettings


def main() -> None:
    server.main(
        "shop_order.app:create_app",
        OrderSettings(),
        migrations=Path(__file__).with_name("migrations"),
    )


if __name__ == "__main__":
    main()
