"""The wire protocols desync speaks over SSH.

``messages`` and ``stream`` are the casync protocol (docs/protocol.md 1-7):
``server`` is the remote end (``desync pull``), ``client`` the side our
``ssh://`` stores use.  ``sftp`` and ``sftp_client`` are SFTP version 3 for
``sftp://`` stores; ``transport`` starts ssh for both.
"""
