"""SystemClusters: union of systems sharing components; ids stable under additions."""

import numpy as np

import hetu
from hetu.cluster import ENDPOINT_CLUSTER_ID, build_clusters
from hetu.system import resolve_systems

NS = "TestCluster"


def _comp(name: str) -> type[hetu.BaseComponent]:
    cls = type(
        name,
        (hetu.BaseComponent,),
        {"__annotations__": {"v": np.int64}, "v": hetu.property_field(0)},
    )
    return hetu.define_component(namespace=NS, force=True)(cls)


A, B, C, D = _comp("A"), _comp("B"), _comp("C"), _comp("D")


def _layout():
    clusters = build_clusters(resolve_systems(NS))
    return {tuple(x.name_ for x in c.components): (c.id, c.tag) for c in clusters}


def test_shared_components_merge_and_ids_stay_when_unrelated_system_added() -> None:
    @hetu.define_system(namespace=NS, components=(A, B), force=True)
    async def ab(ctx):
        pass

    @hetu.define_system(namespace=NS, components=(B,), force=True)
    async def b_only(ctx):
        pass

    @hetu.define_system(namespace=NS, components=(C,), force=True)
    async def c_only(ctx):
        pass

    before = _layout()
    assert set(before) == {(), ("A", "B"), ("C",)}

    @hetu.define_system(namespace=NS, components=(D,), force=True)
    async def d_only(ctx):
        pass

    after = _layout()
    assert set(after) == {(), ("A", "B"), ("C",), ("D",)}
    for key, ident in before.items():
        assert after[key] == ident
    assert after[()] == (ENDPOINT_CLUSTER_ID, "ep")
    assert len({i for i, _ in after.values()}) == 4


def test_depends_merges_and_tagged_copy_separates_from_the_original() -> None:
    @hetu.define_system(namespace=NS, components=(C,), force=True)
    async def c_only(ctx):
        pass

    @hetu.define_system(
        namespace=NS, components=(D,), depends=("c_only:t1",), force=True
    )
    async def d_only(ctx):
        pass

    @hetu.define_system(namespace=NS, components=(B,), depends=(c_only,), force=True)
    async def b_only(ctx):
        pass

    layout = _layout()
    # The copy C:t1 commits with its caller d_only, apart from the original C.
    assert ("C:t1", "D") in layout
    assert ("A", "B", "C") in layout
    clusters = build_clusters(resolve_systems(NS))
    by_name = {s: c for c in clusters for s in c.systems}
    assert by_name["c_only:t1"] is by_name["d_only"]
    assert by_name["c_only"] is by_name["b_only"] is by_name["ab"]


def test_id_collision_goes_to_the_smaller_name_first() -> None:
    # "TestCluster.C51" and "TestCluster.C60" hash to the same id (9308).
    c51, c60 = _comp("C51"), _comp("C60")

    @hetu.define_system(namespace=NS, components=(c60,), force=True)
    async def uses_c60(ctx):
        pass

    @hetu.define_system(namespace=NS, components=(c51,), force=True)
    async def uses_c51(ctx):
        pass

    layout = _layout()
    assert layout[("C51",)][0] == 9308
    assert layout[("C60",)][0] == 9309
