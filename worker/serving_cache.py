"""Moved to :mod:`mafioso.core.serving_cache`: this name stays (the same module) until worker/engine.py, being
redesigned on another branch, imports it from core; then delete this file."""
import sys

from mafioso.core import serving_cache

sys.modules[__name__] = serving_cache
