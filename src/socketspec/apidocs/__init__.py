"""The interactive docs page and the machine-readable documents of an app.

``schema`` builds the SocketSpec JSON document (``<docs_url>/schema``),
``asyncapi`` the AsyncAPI 3.0 document (``/asyncapi.json``), ``routes`` serves
them and the page's static assets (``static/``, shipped in the package: the
page works offline) on the WebSocket port, behind ``docs_access_token``.
"""
