"""The command line's exit codes, one meaning each, so scripts can tell what to fix."""

from __future__ import annotations

OK = 0
FAILED = 1  # the engine or a file operation failed; the cause is printed
BAD_INPUT = 2  # an invalid stack file, bad arguments or a request refused before anything ran
MISSING = 3  # a missing prerequisite: the pulumi CLI, a provider plugin, a tool

EPILOG = """exit codes:
  0  done
  1  the engine or a file operation failed (the cause is printed last)
  2  bad input: an invalid stack file (every problem listed), bad arguments, a missing project
     directory, or a request refused before anything ran (destroy without confirmation, a render
     over a directory it did not write)
  3  a missing prerequisite: no pulumi CLI, a provider plugin that could not be installed, or a
     tool serve-bundle needs"""
