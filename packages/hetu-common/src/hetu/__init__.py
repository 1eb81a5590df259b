"""HeTu: the app author API."""

from hetu.component import BaseComponent, define_component
from hetu.errors import ClientReject, RaceCondition, UniqueViolation
from hetu.permission import Permission
from hetu.property import property_field

__all__ = [
    "BaseComponent",
    "ClientReject",
    "Permission",
    "RaceCondition",
    "UniqueViolation",
    "define_component",
    "property_field",
]
