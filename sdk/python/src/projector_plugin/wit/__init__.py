"""The WIT contract this package implements: ``projection.wit`` in this directory, package
``projector:projection`` at the version of this Python package, world ``projection``.

``python -m projector_plugin.wit`` prints the directory, for ``componentize-py -d``.
"""

import os

#: The directory holding ``projection.wit``.
DIRECTORY = os.path.dirname(os.path.abspath(__file__))
