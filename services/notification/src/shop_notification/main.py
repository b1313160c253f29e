"""Entry point: ``python -m shop_notification.main``."""

from __future__ import annotations

from shopkit.server import serve

from shop_notification.settings import NotificationSettings


def main() -> None:
    serve("shop_notification.app:create_app", NotificationSettings())


if __name__ == "__main__":
    main()
