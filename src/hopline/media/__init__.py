"""Media: the voice codec and the parts that carry and judge voice frames.

* :mod:`hopline.media.opus` — a thin ctypes binding to libopus:
  :class:`~hopline.media.opus.OpusEncoder` (bitrate, in-band FEC, expected
  loss, complexity, DTX) and :class:`~hopline.media.opus.OpusDecoder`
  (decode, loss concealment, recovery of a lost frame from the FEC data in
  the next packet), behind the small ``VoiceEncoder``/``VoiceDecoder``
  interface the rest of Hopline codes against.
* :mod:`hopline.media.packet` — media packets: one Opus frame plus earlier
  frames as redundancy.
* :mod:`hopline.media.jitterbuffer` — the adaptive jitter buffer that decides,
  once per 20 ms slot, whether to decode, recover from FEC or conceal.
* :mod:`hopline.media.quality` — the estimated MOS (simplified E-model) shown
  in live call statistics.
* :mod:`hopline.media.report` — receiver reports (type byte ``0xA1``): loss,
  loss bursts, jitter, jitter-buffer delay and clock echoes for the RTT.
* :mod:`hopline.media.ratecontrol` — the rate controller: receiver reports in,
  bitrate, FEC, expected loss and packet redundancy out.
* :mod:`hopline.media.stream` — :class:`~hopline.media.stream.VoiceStream`,
  one side of a call as a sans-I/O engine: PCM and datagrams in, PCM,
  datagrams and live statistics out.
* :mod:`hopline.media.mixer` — :class:`~hopline.media.mixer.ConferenceMixer`,
  the conference host's mixer as a sans-I/O engine: every participant's
  stream through its own jitter buffer, mix-minus for the loudest speakers,
  one shared encode for everyone else, AGC, a soft limiter and active
  speaker detection.

This package imports nothing on import (no numpy, no libopus); import the
modules directly.
"""
