"""Dependencies of the product routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shop_product.settings import ProductSettings


def get_settings(request: Request) -> ProductSettings:
    settings: ProductSettings = request.app.state.runtime.settings
    return settings


SettingsDep = Annotated[ProductSettings, Depends(get_settings)]
