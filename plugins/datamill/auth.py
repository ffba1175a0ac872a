"""Airflow's own authentication and authorisation for the plugin's routes.

Airflow gives plugin FastAPI apps no authentication (apache/airflow PR
#72655), so the app depends on :data:`CanView` globally and mutating routes
add :data:`CanEditDags`. Both resolve the user exactly as Airflow's REST API
does (``airflow.api_fastapi.core_api.security``): a Bearer JWT, else the UI's
session cookie; the configured auth manager decides.
"""
from __future__ import annotations

from typing import Annotated

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import (GetUserDep, get_user, requires_access_dag,
                                                   requires_access_view)
from fastapi import Depends

# Read access to plugin pages: any role that may see Airflow's plugin views.
CanView = Depends(requires_access_view(AccessView.PLUGINS))
# Changing what runs (approving a pipeline, labelling, triggering): DAG edit rights.
CanEditDags = Depends(requires_access_dag(method="PUT"))

User = GetUserDep


def user_name(user) -> str:
    """A stable display name for audit records (who approved, who labelled)."""
    for attr in ("get_name", "get_id"):
        fn = getattr(user, attr, None)
        if callable(fn):
            name = fn()
            if name:
                return str(name)
    return str(getattr(user, "username", "unknown"))


def _current_user_name(user=Depends(get_user)) -> str:
    return user_name(user)


# The acting user's name, for routes that record who did something.
UserName = Annotated[str, Depends(_current_user_name)]
