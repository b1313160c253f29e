"""Entry point: ``python -m shop_cart.main`` serves; ``... main migrate`` migrates and exits."""

from __future__ import annotations

from pathlib import Path

from shopkit import server

from shop_cart.settings import CartSettings


def main() -> None:
    server.main(
        "shop_cart.app:create_app",
        CartSettings(),
        migrations=Path(__file__).with_name("migrations"),
    )


if __name__ == "__main__":
    main()
