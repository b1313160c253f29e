"""Entry point: ``python -m shop_notification.main`` serves; ``... migrate`` migrates, exits."""

from __future__ import annotations

from pathlib import Path

from shopkit import server

from shop_notification.settings import NotificationSettings


def main() -> None:
    server.main(
        "shop_notification.app:create_app",
        NotificationSettings(),
        migrations=Path(__file__).with_name("migrations"),
    )


if __name__ == "__main__":
    main()
