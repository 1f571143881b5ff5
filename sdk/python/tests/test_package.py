"""The package is versioned with the WIT: its version is the WIT package's, and the contract it
ships is the repository's ``wit/projection.wit``, byte for byte."""

import re
import subprocess
import sys
import tomllib
import unittest
from pathlib import Path

import projector_plugin
from projector_plugin.wit import DIRECTORY

PACKAGE = Path(__file__).resolve().parents[1]
REPOSITORY_WIT = PACKAGE.parents[1] / "wit" / "projection.wit"


class PackageTest(unittest.TestCase):
    def test_the_version_is_the_wit_package_version(self):
        declared = re.search(r"^package projector:projection@(\S+);", REPOSITORY_WIT.read_text(), re.M)
        self.assertIsNotNone(declared, "no package line in wit/projection.wit")
        self.assertEqual(projector_plugin.__version__, declared.group(1))

    def test_the_version_is_read_from_the_module(self):
        project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
        self.assertEqual(project["dynamic"], ["version"])
        self.assertNotIn("version", project)

    def test_the_bundled_wit_is_the_repository_wit(self):
        bundled = Path(DIRECTORY) / "projection.wit"
        self.assertEqual(bundled.read_bytes(), REPOSITORY_WIT.read_bytes(),
                         f"copy wit/projection.wit to {bundled}")

    def test_the_wit_module_prints_its_directory(self):
        printed = subprocess.run([sys.executable, "-B", "-m", "projector_plugin.wit"], check=True,
                                 capture_output=True, text=True, cwd=PACKAGE / "src").stdout
        self.assertEqual(printed.strip(), DIRECTORY)


if __name__ == "__main__":
    unittest.main()
