"""The datamill Airflow plugin (the one file Airflow loads from plugins/).

The app and its pages live in the ``plugins.datamill`` package; see its
docstring. Imported by the api-server only when it serves plugins, so DAG
parsing never pays for FastAPI or the pages.
"""
from airflow.plugins_manager import AirflowPlugin

from plugins.datamill.app import app, views


class DatamillPlugin(AirflowPlugin):
    name = "datamill"
    fastapi_apps = [{"name": "datamill", "app": app, "url_prefix": "/datamill"}]
    external_views = views
