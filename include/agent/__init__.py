"""The data agent: a request in plain language becomes a validated pipeline
spec and a review item that a person approves before anything goes live.

Modules (one job each):

- ``graph``        the planner as an explicit graph of steps over a JSON state (and why
                   not LangGraph); ``plan()`` runs them in order
- ``skills``       every op's catalogue metadata and every live spec as a skill
- ``retrieve``     hybrid lexical (BM25) + MiniLM embedding retrieval, low-match signal
- ``understand``   request -> parts, intents, source, format, name, output table, flags;
                   injected instructions are recorded and stay inert
- ``params``       values in words: thresholds, languages, schedules, counts, cut-offs
- ``offline``      the ``--llm none`` planner: retrieval plus rules
- ``llm_planner``  the ``--llm openai`` planner: structured output, schema from the catalogue
- ``llm``          one cached, retried structured LLM call (planner, ask, op drafts)
- ``revise``       feedback on an existing spec, keeping untouched steps as they are
- ``compose``      prompt params of LLM ops (rubric, labels, instructions, ``where``)
- ``checks``       the validator plus plan checks, and the bounded repair loop
- ``dry_run``      a small sample of the real source through the real engines
- ``explain``      ``plan.md``, the spec YAML and the DAG file from the one fixed template
- ``review_store`` the one review store (CLI, Airflow HITL DAG, plugin page)
- ``opgen``        ``datamill op new``: generated ops under review, static checks;
                   ``rowops`` the base classes their modules use
- ``ask``          ``datamill ask``: document Q&A with citations
- ``cli``          the ``plan``/``render``/``review``/``ask``/``op`` subcommands
- ``demo``         the agent's part of ``datamill demo``

Nothing here imports Airflow; the Airflow side calls ``graph`` steps and
``review_store`` from its tasks and plugin routes.
"""
