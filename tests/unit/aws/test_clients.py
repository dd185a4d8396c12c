"""The client cache: clients shared by identical keys and settings, bounded in number, rebuilt
after eviction.

Building a botocore client makes no network call, so these run without an endpoint; calls
through evicted and rebuilt clients are covered by the integration tests against moto.
"""

from typing import Any

import pytest

from incident_commander.aws.clients import ClientCache, ConnectionClients
from incident_commander.aws.credentials import StaticKeys
from incident_commander.aws.spec import parse_connection_spec

RAW = {"region": "eu-west-1", "endpointUrl": "http://127.0.0.1:9", "services": ["sts"]}
SPEC = parse_connection_spec(RAW)


@pytest.fixture(scope="module")
def loader() -> Any:
    return ClientCache().loader  # loading service models is the slow part: once per module


def connection(cache: ClientCache, key_id: str = "AKIDEXAMPLE") -> ConnectionClients:
    return ConnectionClients.build(SPEC, StaticKeys(key_id, "secret-" + key_id), cache)


def test_connections_with_the_same_keys_and_settings_share_clients(loader: Any) -> None:
    builds: list[None] = []
    cache = ClientCache(8, loader, on_build=lambda: builds.append(None))
    first, twin = connection(cache), connection(cache)  # identical spec and keys
    assert first.client("sts") is first.client("sts")
    assert first.client("sts") is twin.client("sts")
    assert first.probe_client("sts") is not first.client("sts")  # retries differ
    assert len(cache) == 2 and len(builds) == 2


def test_different_keys_or_settings_never_share_a_client(loader: Any) -> None:
    cache = ClientCache(8, loader)
    base = connection(cache, "AKIDSAME")
    other_secret = ConnectionClients.build(SPEC, StaticKeys("AKIDSAME", "another-secret"), cache)
    with_token = ConnectionClients.build(SPEC, StaticKeys("AKIDSAME", "secret-AKIDSAME", "token"), cache)
    default_chain = ConnectionClients.build(SPEC, None, cache)
    other_region = ConnectionClients.build(
        parse_connection_spec({**RAW, "region": "eu-central-1"}),
        StaticKeys("AKIDSAME", "secret-AKIDSAME"),
        cache,
    )
    slower = ConnectionClients.build(
        parse_connection_spec({**RAW, "timeouts": {"read": "90s"}}),
        StaticKeys("AKIDSAME", "secret-AKIDSAME"),
        cache,
    )
    clients = [c.client("sts") for c in (base, other_secret, with_token, default_chain, other_region, slower)]
    assert len({id(c) for c in clients}) == 6
    assert other_region.client("sts").meta.region_name == "eu-central-1"


def test_the_identity_digest_is_salted_per_cache(loader: Any) -> None:
    keys = StaticKeys("AKIDEXAMPLE", "secret")
    assert ClientCache(1, loader).identity(SPEC, keys) != ClientCache(1, loader).identity(SPEC, keys)
    assert "secret" not in ClientCache(1, loader).identity(SPEC, keys)


def test_each_client_signs_with_its_own_connections_keys(loader: Any) -> None:
    cache = ClientCache(8, loader)
    one, other = connection(cache, "AKIDONE"), connection(cache, "AKIDOTHER")
    assert one.client("sts")._get_credentials().access_key == "AKIDONE"
    assert other.client("sts")._get_credentials().access_key == "AKIDOTHER"
    client = one.client("dynamodb")
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.endpoint_url == "http://127.0.0.1:9"


def test_the_least_recently_used_client_is_evicted_and_rebuilt_on_next_use(loader: Any) -> None:
    builds: list[None] = []
    cache = ClientCache(2, loader, on_build=lambda: builds.append(None))
    a, b, c = connection(cache, "AKIDA"), connection(cache, "AKIDB"), connection(cache, "AKIDC")
    a_sts = a.client("sts")
    b.client("sts")
    assert a.client("sts") is a_sts  # a is now the most recently used
    c.client("sts")  # evicts b's
    assert len(cache) == 2 and len(builds) == 3
    assert a.client("sts") is a_sts and len(builds) == 3
    rebuilt = b.client("sts")
    assert len(builds) == 4 and rebuilt._get_credentials().access_key == "AKIDB"


def test_closing_a_connection_drops_only_its_clients(loader: Any) -> None:
    cache = ClientCache(8, loader)
    gone, kept = connection(cache, "AKIDGONE"), connection(cache, "AKIDKEPT")
    gone.client("sts"), gone.client("s3")
    kept_client = kept.client("sts")
    gone.close()
    assert len(cache) == 1
    assert kept.client("sts") is kept_client


def test_a_shared_client_is_closed_only_when_its_last_holder_goes(loader: Any) -> None:
    cache = ClientCache(8, loader)
    first, twin = connection(cache), connection(cache)
    shared = first.client("sts")
    first.close()
    assert twin.client("sts") is shared and len(cache) == 1
    twin.close()
    assert len(cache) == 0


def test_a_cache_holds_at_least_one_client() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ClientCache(0)
