"""Moved to bundler_lib/common/edits.py (A2 and A3 apply A1's edits; no stage imports another). This name stays
until collect_python.py imports from common (then delete this file)."""

from bundler_lib.common.edits import apply_edits, file_header, license_of

__all__ = ["apply_edits", "file_header", "license_of"]
