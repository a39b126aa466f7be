"""The ``hkt`` command line."""
