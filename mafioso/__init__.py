"""Mafioso: explains Python code in the voice of a Hollywood mafioso."""

__version__ = "0.1.0"
