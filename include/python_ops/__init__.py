"""Python-engine ops (they get the Spark DataFrame of their input step):
importing this package registers them all."""
from include.python_ops import gx_validate, stats_report  # noqa: F401
