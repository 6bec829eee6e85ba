"""The supernode role.

* :mod:`~hopline.supernode.enrollment` — getting and renewing a supernode
  certificate from the login server with a one-time enrollment token.
"""
