"""Prints the directory of the bundled WIT contract (see the package docstring)."""

from projector_plugin.wit import DIRECTORY

print(DIRECTORY)
