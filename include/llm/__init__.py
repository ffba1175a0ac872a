"""LLM access for the model-heavy ops: where the model is (``credentials``),
what is asked and how answers are checked (``answers``), the HTTP client with
retries (``client``), the engines (``engine``: the interface;
``openai_engine``, ``vllm_engine``) and the Delta answer cache (``cache``)."""
