"""Sphinx extension: small fixes to what every page loads, found by the browser tests.

- sphinx-thebe registers its inline configuration script on every
  ``env-before-read-docs``, so a page can carry ``const THEBE_JS_URL = ...`` twice, and
  the second copy throws "Identifier 'THEBE_JS_URL' has already been declared". Each
  page's scripts are de-duplicated here.
- sphinx-external-toc writes ``index.html`` as a bare ``<meta http-equiv="Refresh">``
  line: naming no icon, it makes the browser ask for ``/favicon.ico`` and log a 404. It
  is rewritten here as a small page with an empty inline icon (the site's favicon
  would be fetched and then aborted by the redirect, which the browser test counts).
"""

from __future__ import annotations

import html
from pathlib import Path

REDIRECT = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Refresh" content="0; url={url}">
<link rel="icon" href="data:,">
<title>{title}</title>
</head>
<body><p><a href="{url}">{title}</a></p></body>
</html>
"""


def dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        attributes = dict(getattr(js, "attributes", None) or {})
        attributes.pop("priority", None)
        key = (
            getattr(js, "filename", str(js)) or None,
            tuple(sorted(attributes.items())),
        )  # '' and None alike
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def write_redirect(app, exception):
    """Write ``index.html``, the redirect to the root page, as a whole page (see above)."""
    if (
        exception
        or app.builder.name not in ("html", "dirhtml")
        or "index" in app.env.all_docs
    ):
        return  # a failed build, or an index.html that is a page of the book
    url = html.escape(app.builder.get_target_uri(app.config.root_doc))
    title = html.escape(app.config.html_title or app.config.project)
    (Path(app.outdir) / "index.html").write_text(REDIRECT.format(url=url, title=title))


def setup(app):
    app.connect("html-page-context", dedupe_scripts, priority=900)
    # after sphinx-external-toc's handler (priority 500), which writes the redirect
    app.connect("build-finished", write_redirect, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
