"""The collector's dashboard: server-rendered pages (Jinja2), their JSON twins, static files, login.

One module per page family: :mod:`.overview` (overview, endpoint and consumer pages), :mod:`.tables`
(endpoints and consumers tables), :mod:`.live` (server-sent events), :mod:`.projects` (projects, keys, tokens,
retention), :mod:`.export`; :mod:`.login` holds login, logout and the admin created on first start,
:mod:`.web` what every page shares (templates, security headers, sessions, CSRF, the view in the query
string). All SQL stays in the store. :func:`.routes.mount` is what the app mounts under ``/``.

This package module imports nothing, so :mod:`.passwords` stays importable by the command line cheaply.
"""
