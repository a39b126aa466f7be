"""hkt-tabular: the example plugin of docs/writing-a-plugin.md.

It registers one data set (``wine``: scikit-learn's 178 wines, 13 measurements, 3 cultivars), two
models (``wine_transformer``, a small transformer over one token per measurement, and
``wine_mlp``) and the pair ``wine-transformer-mlp`` that joins them. ``plugin.py`` holds the hooks;
the entry point in ``pyproject.toml`` (group ``hkt``, name ``tabular``) makes hkt load it.
"""
