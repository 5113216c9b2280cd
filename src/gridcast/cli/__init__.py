"""The `gridcast` command: argument parsing and printing only; the library does the work."""
from gridcast.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
