"""Sphinx configuration of the ip_diffim documentation (documenteer guide layout).

documenteer's current release no longer ships the "pipelines package" configuration nor the
``lsst-task-*`` / ``lsst-config*`` directives; ``_ext/ipdiffimDocs.py`` provides the directives the
task pages use, rendering each task's config fields by introspecting its Config class.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

from documenteer.conf.guide import *  # noqa: E402, F403

exclude_patterns.extend(["makeReadmePictures.py", "_ext"])  # noqa: F405
# The build must work offline (tests/test_docs.py): no intersphinx inventories are fetched.
intersphinx_mapping = {}
# No analytics script or external links in a local build.
html_theme_options.pop("analytics", None)  # noqa: F405
# The sitemap needs a published base URL; a local build has none.
extensions.remove("sphinx_sitemap")  # noqa: F405
# Class docstrings list their attributes in an "Attributes" section; as :ivar: fields they do not
# describe the dataclass fields a second time (autodoc documents those as members).
napoleon_use_ivar = True
