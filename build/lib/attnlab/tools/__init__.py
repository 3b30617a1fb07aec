"""The user tools behind the ``attnlab-*`` console scripts (see pyproject.toml and the README)."""
