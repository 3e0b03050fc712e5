"""One file per schema revision: frozen history, changed only in docstrings and comments.

See docs/schema.md.
"""
