"""The overlay layer: how supernodes know each other and split the directory.

All supernodes know all supernodes (a one-hop overlay, as in Gupta, Liskov and
Rodrigues' one-hop lookups), so a directory lookup is a single overlay hop.

* :mod:`hopline.overlay.membership` -- who is in the overlay: a sans-I/O,
  SWIM-style gossip membership with failure detection (randomized probing,
  indirect probes, suspicion and refutation by incarnation numbers,
  piggybacked dissemination, push-pull anti-entropy).
* :mod:`hopline.overlay.slots` -- the directory key space: usernames to
  slots, slots to the supernodes that own them (rendezvous hashing over the
  live members that membership reports), with minimal-churn handover plans.
* :mod:`hopline.overlay.directory` -- the presence records a supernode holds
  for its slots: only certified owners may publish, newer sequences win,
  records expire and stay findable as "offline, last seen" for 72 hours,
  and memory is bounded.
* :mod:`hopline.overlay.search` -- the "white pages": public profile terms
  indexed on the slots their terms hash to, bounded and paginated queries.

Like every protocol core in Hopline these modules do no I/O: they take
messages and a clock value and return messages, timers and events.
"""
