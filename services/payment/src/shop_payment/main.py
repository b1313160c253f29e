"""Entry point: ``python -m shop_payment.main``."""

from __future__ import annotations

from shopkit.server import serve

from shop_payment.settings import PaymentSettings


def main() -> None:
    serve("shop_payment.app:create_app", PaymentSettings())


if __name__ == "__main__":
    main()
