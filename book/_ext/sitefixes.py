"""Sphinx extension: small fixes to what every page loads, found by the browser tests.

- sphinx-thebe registers its inline configuration script on every
  ``env-before-read-docs``, so a page can carry ``const THEBE_JS_URL = ...`` twice, and
  the second copy throws "Identifier 'THEBE_JS_URL' has already been declared". Each
  page's scripts are de-duplicated here.
"""

from __future__ import annotations


def dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        attributes = dict(getattr(js, "attributes", None) or {})
        attributes.pop("priority", None)
        key = (getattr(js, "filename", str(js)) or None, tuple(sorted(attributes.items())))  # '' and None alike
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
