"""The client cache: per-connection clients, bounded in number, rebuilt after eviction.

Building a botocore client makes no network call, so these run without an endpoint; calls
through evicted and rebuilt clients are covered by the integration tests against moto.
"""

from typing import Any

import pytest

from incident_commander.aws.clients import ClientCache, ConnectionClients
from incident_commander.aws.credentials import StaticKeys
from incident_commander.aws.spec import parse_connection_spec

SPEC = parse_connection_spec(
    {"region": "eu-west-1", "endpointUrl": "http://127.0.0.1:9", "services": ["sts"]}
)


@pytest.fixture(scope="module")
def loader() -> Any:
    return ClientCache().loader  # loading service models is the slow part: once per module


def connection(cache: ClientCache, key_id: str = "AKIDEXAMPLE") -> ConnectionClients:
    return ConnectionClients.build(SPEC, StaticKeys(key_id, "secret-" + key_id), cache)


def test_a_connection_reuses_its_client_and_never_gets_another_connections(loader: Any) -> None:
    cache = ClientCache(8, loader)
    first, twin = connection(cache), connection(cache)  # identical spec and keys
    assert first.client("sts") is first.client("sts")
    assert first.client("sts") is not twin.client("sts")
    assert first.probe_client("sts") is not first.client("sts")  # retries differ
    assert len(cache) == 3


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


def test_a_cache_holds_at_least_one_client() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ClientCache(0)
