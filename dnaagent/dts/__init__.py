"""Decentralized tracing (DTS): Doubletree, stop sets, chunks and the DHT planes.

* :mod:`~dnaagent.dts.doubletree` -- the pure Doubletree trace: fed hop answers, returns
  the next TTL to probe and records why each direction stopped.
* :mod:`~dnaagent.dts.stopsets` -- the local stop set (interfaces) and the per-chunk
  global stop set of (interface, destination) pairs.
* :mod:`~dnaagent.dts.chunks` -- DHT keys of a campaign's chunks and the probing target
  (PT) encoding.
* :mod:`~dnaagent.dts.plane` -- the control and data planes (PT, PC, PD) behind a small
  key-value interface, leases on chunks, deny list.
* :mod:`~dnaagent.dts.monitor` -- a monitor probing one chunk with any prober.
* :mod:`~dnaagent.dts.realprober` -- the same over asynchronous (real) probes.
* :mod:`~dnaagent.dts.simprober` -- path replay from RTrack traceroutes and Topology Zoo.
* :mod:`~dnaagent.dts.export` -- RIPE Atlas traceroute JSON and CSV.
"""
