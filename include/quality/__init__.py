"""Data quality and statistics: the engine code behind ``gx_validate``,
``stats_report``, ``datamill stats`` / ``datamill sample`` and the plugin's
Reports and Inspect pages.

- ``expectations``: expectation suites (``include/expectations/NAME.yml``) and
  their validation against GX's own expectation schemas, without importing GX
  (specs are validated at DAG parse time, where GX's 6 s import is not allowed).
- ``gate``: runs Great Expectations on a Spark DataFrame, records the results
  in ``_system/quality`` and builds the Data Docs site.
- ``stats``: dataset statistics as Spark aggregations (only aggregates and
  bounded samples reach the driver).
- ``report``/``plots``: the self-contained HTML report with embedded plots.
- ``sample``: stratified samples of kept and removed rows for people to judge.
- ``labels``: the human labels (``_system/human_labels``) and the agreement
  (estimated precision) per step and rule.
- ``runs``: which run produced a table version; report locations.

Nothing here imports Airflow.
"""
