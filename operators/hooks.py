"""Hooks: where Airflow connections become engine configuration.

``datamill_spark``: host ``sc://h:15002`` (Spark Connect) or a master
(``spark://h:7077``, ``yarn``, ``k8s://https://...``); extra JSON = Spark conf.
``datamill_ray``: host = Ray address (``ray://h`` + port 10001 for Ray Client, ``h`` + port
6379 for a cluster's GCS, ``auto``).
A missing connection means local engines.
"""
from __future__ import annotations

import os
from typing import Any

from airflow.sdk import BaseHook


def _optional_connection(conn_id: str):
    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - not defined: the local default applies
        return None


class SparkSessionHook(BaseHook):
    conn_name_attr = "spark_conn_id"
    default_conn_name = "datamill_spark"
    conn_type = "spark"
    hook_name = "datamill Spark"

    def __init__(self, spark_conn_id: str = default_conn_name):
        super().__init__()
        self.spark_conn_id = spark_conn_id

    def target(self) -> tuple[str | None, dict[str, Any]]:
        conn = _optional_connection(self.spark_conn_id)
        if conn is None or not conn.host:
            return None, {}
        host = conn.host
        if conn.port:
            host = f"{host}:{conn.port}"
        if conn.conn_type in ("spark_connect", "spark-connect") and not host.startswith("sc://"):
            host = f"sc://{host}"
        return host, dict(conn.extra_dejson or {})

    def get_conn(self):
        from spark_jobs import session

        target, conf = self.target()
        self.log.info("Spark: %s", target or "a local session of this task's own "
                      f"(no {self.spark_conn_id!r} connection)")
        session.configure(target, conf)
        return session.get_spark()


class RayHook(BaseHook):
    conn_name_attr = "ray_conn_id"
    default_conn_name = "datamill_ray"
    conn_type = "ray"
    hook_name = "datamill Ray"

    def __init__(self, ray_conn_id: str = default_conn_name):
        super().__init__()
        self.ray_conn_id = ray_conn_id

    def get_conn(self) -> str | None:
        """Export the cluster address for the Ray engine; None = local Ray."""
        from ray_jobs.engine import connection_address

        conn = _optional_connection(self.ray_conn_id)
        addr = connection_address(conn.host, conn.port) if conn is not None else None
        if addr:
            os.environ["DATAMILL_RAY_ADDRESS"] = addr
        self.log.info("Ray: %s", addr or "a local Ray of this task's own "
                      f"(no {self.ray_conn_id!r} connection)")
        return addr
