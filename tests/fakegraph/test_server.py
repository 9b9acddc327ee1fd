"""The HTTPS server around the tenant: lifecycle, settings sections, the request log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from remote_guard.fakegraph.scenario import Scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.settings import settings_from_mapping


def test_settings_sections_configure_remote_guard(server: FakeTenantServer) -> None:
    """tenant_settings() and directory_settings() make valid remote_guard settings."""
    scenario = server.scenario

    settings = settings_from_mapping(
        {"tenant": server.tenant_settings(), "directory": server.directory_settings()},
        source="test",
    )

    assert server.tenant_settings() == {
        "tenant_id": "7d9f3e2a-1b4c-4e8d-9a6f-5c2b1e0d4a37",
        "client_id": "0b3c6a5e-8f21-4d7a-b9e0-2c4f6a8d1e35",
        "client_secret": "demo-secret-not-for-production",
        "authority_host": server.base_url,
        "graph_base_url": f"{server.base_url}/v1.0",
        "ca_bundle": str(server.ca_path),
    }
    assert server.directory_settings() == {
        "staff_group_ids": [scenario.group_id("staff")],
        "pupil_group_ids": [scenario.group_id("pupils")],
        "slt_group_ids": [scenario.group_id("slt")],
        "dsl_group_ids": [scenario.group_id("dsl-group")],
        "deputy_dsl_group_ids": [],
    }
    assert settings.tenant.authority == f"{server.base_url}/7d9f3e2a-1b4c-4e8d-9a6f-5c2b1e0d4a37"
    assert server.base_url.startswith("https://127.0.0.1:")
    assert server.authority_host == server.base_url


def test_addresses_need_a_started_server(scenario: Scenario, tmp_path: Path) -> None:
    """Before start() there is no port, so no URL to hand out."""
    idle = FakeTenantServer(scenario, state_dir=tmp_path)

    with pytest.raises(RuntimeError, match="not started"):
        _ = idle.base_url


def test_request_log_keeps_the_path_as_sent(server: FakeTenantServer, graph: Any) -> None:
    """Each request is logged with its percent-encoding and query string intact."""
    graph.get("/users?$filter=userType%20eq%20'Guest'")

    assert [(r.method, r.path, r.status, r.in_batch) for r in server.requests][-1] == (
        "GET",
        "/v1.0/users?$filter=userType%20eq%20'Guest'",
        200,
        False,
    )


def test_stop_is_idempotent_and_frees_the_thread(scenario: Scenario, tmp_path: Path) -> None:
    """A server can be stopped twice; the TLS files stay for inspection."""
    server = FakeTenantServer(scenario, state_dir=tmp_path)
    server.start()
    server.stop()
    server.stop()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem", "server.key", "server.pem"]


def test_scenario_keys_map_to_graph_ids(server: FakeTenantServer) -> None:
    """Join URLs, direct-call record ids and external joiners' ids can be traced to keys."""
    externals = server.external_identity_ids()

    assert server.join_url("zoom") is None
    assert server.join_url("lesson") is not None
    assert server.call_record_id("peer") == server.state.peer_calls[0].id
    assert server.call_record_id("no-such-call") is None
    assert sorted(externals.values()) == ["anon", "caller", "partner"]
    assert externals["+447XXXXXX123"] == "caller"
