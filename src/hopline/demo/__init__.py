"""``hopline demo``: a whole Hopline network on this machine.

* :mod:`~hopline.demo.cluster` starts real ``hopline`` server processes, waits
  for each to report that it is ready, and stops every one of them on exit,
  error or interrupt. Tests use it too.
* :mod:`~hopline.demo.walkthrough` runs the steps and reports their timings.
"""
