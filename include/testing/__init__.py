"""Real local services that tests, benchmarks and demos run against."""
