"""HeTu: the app author API."""

import hetu.future_call  # noqa: F401  (registers the built-in FutureCall Systems)
from hetu.component import BaseComponent, define_component
from hetu.context import EndpointContext, SystemContext, elevate
from hetu.errors import ClientReject, RaceCondition, UniqueViolation
from hetu.permission import Permission
from hetu.property import property_field
from hetu.system import (
    ResponseToClient,
    define_endpoint,
    define_system,
    guard,
    rate_limit,
)

__all__ = [
    "BaseComponent",
    "ClientReject",
    "EndpointContext",
    "Permission",
    "RaceCondition",
    "ResponseToClient",
    "SystemContext",
    "UniqueViolation",
    "define_component",
    "define_endpoint",
    "define_system",
    "elevate",
    "guard",
    "property_field",
    "rate_limit",
]
