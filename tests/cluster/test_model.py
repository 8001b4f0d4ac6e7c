"""The packed address layout of EndpointSlices: the walking functions agree with the values."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from kdns.cluster.model import (
    Endpoint,
    EndpointSlice,
    address_count,
    address_positions,
    pack_raw,
    raw_addresses,
    unpack_addresses,
)

V4A, V4B = ip_address("10.0.0.1"), ip_address("10.0.0.2")
V6A = ip_address("fd00::1")

SHAPES = {
    "ipv4": [Endpoint((V4A,)), Endpoint((V4B,), ready=False, hostname="b")],
    "ipv6": [Endpoint((V6A,), hostname="a")],
    "mixed": [Endpoint((V4A,)), Endpoint((V6A,), ready=False)],
    "several addresses an endpoint": [
        Endpoint((V4A, V4B), hostname="two"),
        Endpoint((V6A,), ready=False),
    ],
    # endpoint_pod_names: a pod name names an endpoint without a hostname; a hostname wins.
    "pod names": [
        Endpoint((V4A,), pod_name="web-0"),
        Endpoint((V4B,), hostname="b", pod_name="web-1"),
    ],
    "pod names, no hostnames": [
        Endpoint((V4A, V4B), pod_name="web-0"),
        Endpoint((V6A,), ready=False, pod_name="web-1"),
    ],
}


@pytest.mark.parametrize("endpoints", SHAPES.values(), ids=SHAPES.keys())
def test_raw_entries_and_counts_agree_with_the_endpoint_values(
    endpoints: list[Endpoint],
) -> None:
    es = EndpointSlice("ns", "s", "svc", endpoints, pod_names=True)
    expected = [
        (e.ready, e.hostname or e.pod_name, a.packed) for e in endpoints for a in e.addresses
    ]
    assert list(es.raw_entries()) == expected
    assert es.endpoint_count == len(endpoints)
    assert es.address_count == address_count(es.packed, es.width) == len(expected)
    raws = raw_addresses(es.packed, es.width)
    assert raws == es.raws() == [raw for _, _, raw in expected]
    assert pack_raw(raws, es.width) == es.packed
    assert unpack_addresses(es.packed, es.width) == [a for e in endpoints for a in e.addresses]


def test_raw_entries_leave_pod_names_out_unless_the_slice_keeps_them() -> None:
    es = EndpointSlice("ns", "s", "svc", SHAPES["pod names"])
    assert [label for _, label, _ in es.raw_entries()] == [None, "b"]


def test_address_positions_finds_whole_addresses_only() -> None:
    es = EndpointSlice("ns", "s", "svc", [Endpoint((V4A,)), Endpoint((V4B,)), Endpoint((V4A,))])
    assert address_positions(es.packed, es.width, V4A.packed) == [0, 2]
    # 0.1.10.0 is in the bytes of 10.0.0.1 followed by 10.0.0.2, but not as an address.
    assert es.packed.find(ip_address("0.1.10.0").packed) == 2
    assert address_positions(es.packed, es.width, ip_address("0.1.10.0").packed) == []
    assert address_positions(es.packed, es.width, V6A.packed) == []  # the other family
    mixed = EndpointSlice("ns", "m", "svc", [Endpoint((V6A,)), Endpoint((V4B,))])
    assert address_positions(mixed.packed, mixed.width, V4B.packed) == [1]
    assert address_positions(mixed.packed, mixed.width, V6A.packed) == [0]
