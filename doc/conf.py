"""Sphinx configuration of the ip_diffim documentation (documenteer pipelines package)."""

from documenteer.conf.pipelinespkg import *  # noqa: F403

project = "ip_diffim"
html_theme_options["logotext"] = project  # noqa: F405
html_title = project
html_short_title = project
