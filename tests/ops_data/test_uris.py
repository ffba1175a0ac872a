"""Lakehouse locations are URIs when given as URIs: an object-store root is
joined with ``/`` and never pressed through ``Path`` (which made
``s3://b/x`` into ``<cwd>/s3:/b/x``); local roots stay resolved paths."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("root", ["s3://bucket/lake", "s3://bucket/lake/", "gs://b/l",
                                  "abfss://c@acct.dfs.core.windows.net/lake"])
def test_object_store_roots_stay_uris(root, monkeypatch):
    from include.config import lake_path, lake_root
    from include.lakehouse import Lakehouse
    from include.lineage import asset_uri, dataset_name, table_location

    base = root.rstrip("/")
    lh = Lakehouse(root)
    assert not lh.local
    assert lh.table_path("gold/x") == f"{base}/gold/x"
    assert lh.table_path("_system/ledger") == f"{base}/_system/ledger"
    assert str(lake_root(root)).rstrip("/") == base
    assert str(lake_path(root, "_system", "staging")) == f"{base}/_system/staging"
    monkeypatch.setenv("DATAMILL_LAKE", root)
    assert str(lake_root()).rstrip("/") == base
    assert asset_uri(lake_root(), "gold/x") == f"{base}/gold/x"
    assert table_location(lake_root(), "gold/x") == f"{base}/gold/x"
    scheme, rest = base.split("://", 1)
    authority, key = rest.split("/", 1)
    assert dataset_name(lh.table_path("gold/x")) == (f"{scheme}://{authority}", f"{key}/gold/x")


def test_local_and_file_roots(tmp_path, monkeypatch):
    from include.config import lake_root
    from include.lakehouse import Lakehouse
    from include.lineage import asset_uri

    monkeypatch.chdir(tmp_path)
    local = Lakehouse("lake")
    assert local.local and local.table_path("gold/x") == str(tmp_path / "lake" / "gold" / "x")
    assert isinstance(lake_root("lake"), Path)
    uri = Lakehouse(f"file://{tmp_path}/lake")
    assert not uri.local and uri.table_path("gold/x") == f"file://{tmp_path}/lake/gold/x"
    assert asset_uri(f"file://{tmp_path}/lake", "gold/x") == f"delta://{tmp_path}/lake/gold/x"
    assert asset_uri(tmp_path / "lake", "gold/x") == f"delta://{tmp_path}/lake/gold/x"
    assert not uri.exists("gold/x")
