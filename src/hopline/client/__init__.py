"""The ordinary node (client) side: its profile and its calls to the network.

* :mod:`~hopline.client.profile` — the profile directory: device keys (0600),
  device id, the pinned login server, the current certificate.
* :mod:`~hopline.client.account` — register, log in, log out, renew, against
  the login server over a secure connection.
"""
