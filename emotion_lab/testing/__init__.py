"""Tools for tests and examples: tiny random models of the real backbone configs."""
