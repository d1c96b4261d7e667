"""HTTP servers for chunk stores and index stores (``chunk-server``, ``index-server``)."""
