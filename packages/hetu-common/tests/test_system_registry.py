"""The registry built from an app, and what the schema check reports."""

import msgspec
import numpy as np

import hetu
from hetu.registry import build_layout, default_namespace, schema_problems

NS = "TestRegistry"


@hetu.define_component(namespace=NS, permission=hetu.Permission.OWNER, force=True)
class Pet(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)
    name: str = hetu.property_field("", unique=True, dtype="U8")


@hetu.define_system(
    namespace=NS, components=(Pet,), permission=hetu.Permission.USER, force=True
)
@hetu.rate_limit(5, 2.0)
async def adopt(ctx, name, *tags):
    pass


@hetu.define_system(namespace=NS, components=(Pet,), force=True)
async def internal(ctx):
    pass


@hetu.define_endpoint(namespace=NS, force=True)
async def hi(ctx):
    pass


def test_registry_lists_what_gateways_need() -> None:
    layout = build_layout(NS)
    reg = layout.registry
    pet = reg.components["Pet"]
    assert pet.permission == "OWNER" and pet.indexes == {"id": True, "owner": False,
                                                          "name": True}  # fmt: skip
    assert pet.hash == Pet.schema_hash() and pet.schema == Pet.schema_json()
    assert set(reg.systems) == {"adopt", "hi"}  # internal is not client-callable
    adopt_info = reg.systems["adopt"]
    assert (adopt_info.min_args, adopt_info.max_args) == (1, None)
    assert adopt_info.rate_limits == [(5, 2.0)]
    assert adopt_info.cluster == pet.cluster != 0
    assert reg.systems["hi"].endpoint and reg.systems["hi"].cluster == 0
    assert layout.cluster(pet.cluster).components == (Pet,)
    assert default_namespace(NS) == NS


def test_schema_problems_name_changed_and_moved_components() -> None:
    reg = build_layout(NS).registry
    assert schema_problems(reg, reg) == []
    pet = reg.components["Pet"]
    changed = msgspec.structs.replace(
        reg, components={"Pet": msgspec.structs.replace(pet, hash="x")}
    )
    assert "component Pet" in schema_problems(changed, reg)[0]
    moved = msgspec.structs.replace(
        reg,
        clusters=[msgspec.structs.replace(c, tag=c.tag + "z") for c in reg.clusters],
    )
    assert "cluster" in schema_problems(moved, reg)[0]
    extra = msgspec.structs.replace(
        reg, components={**reg.components, "Gone": msgspec.structs.replace(pet)}
    )
    assert "no longer defines" in schema_problems(extra, reg)[0]
    other = msgspec.structs.replace(reg, namespace="Other")
    assert "--instance" in schema_problems(other, reg)[0]
