"""Entry point: ``python -m shop_payment.main`` serves; ``... main migrate`` migrates and exits."""

from __future__ import annotations

from pathlib import Path

from shopkit import server

from shop_payment.settings import PaymentSettings


def main() -> None:
    server.main(
        "shop_payment.app:create_app",
        PaymentSettings(),
        migrations=Path(__file__).with_name("migrations"),
    )


if __name__ == "__main__":
    main()
