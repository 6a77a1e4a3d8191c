"""`mmbench new method|protocol|dataset NAME`: an installable package for one new plugin.

`names` derives the package's names from the plugin's, `render` writes its files, and `snapshot` holds the
plugin template's code (examples/plugin-template/, in `template.json`) that the method and protocol start from;
docs/plugins.md describes what each kind must do.
"""
