"""Testing support for plugin authors: fixtures (pytest plugin) and contract checks."""
