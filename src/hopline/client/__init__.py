"""The ordinary node (client) side: its profile and its calls to the network.

* :mod:`~hopline.client.profile` — the profile directory: device keys (0600),
  device id, the pinned login server, the current certificate.
* :mod:`~hopline.client.account` — register, log in, log out, renew, against
  the login server over a secure connection.
* :mod:`~hopline.client.hostcache` — the host cache: up to 200 supernodes,
  best first, failures backed off, kept in the profile.
* :mod:`~hopline.client.race` — racing several supernodes at once (staggered,
  UDP then TCP, bootstrap when the cache is dead), sans-I/O plus a driver.
"""
