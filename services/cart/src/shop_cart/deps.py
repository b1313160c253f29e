"""Dependencies of the cart routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path
from shopkit.deps import RuntimeDep

from shop_cart.clients.product import ProductClient
from shop_cart.settings import CartSettings


def get_catalog(runtime: RuntimeDep) -> ProductClient:
    return runtime.client(ProductClient)


def get_settings(runtime: RuntimeDep) -> CartSettings:
    settings = runtime.settings
    assert isinstance(settings, CartSettings)
    return settings


CatalogDep = Annotated[ProductClient, Depends(get_catalog)]
SettingsDep = Annotated[CartSettings, Depends(get_settings)]
ProductIdPath = Annotated[str, Path(min_length=1, max_length=64)]
CustomerIdPath = Annotated[str, Path(min_length=1, max_length=64)]
