"""Reproducible benchmarks of the CPMS node, each beside the baselines it is judged against.

Every scenario (``python -m bench.<scenario>``, ``make bench-<scenario>``) runs on loopback,
is bounded in count and in time, stops by itself, measures its baselines in the same run
(the machines are shared and noisy, so ratios say more than absolute figures) and prints a
table and one JSON line. A scenario never fails: it exits 0 unless it crashed.

- ``load``: the load generator, N raw OCPP-J 1.6 stations in a process of their own;
- ``limit_server`` and ``ocpp_lib_server``: the two baselines, runnable servers
  (``ocpi_limit_server``: the limit of OCPI paging);
- ``servers``: starting and stopping the servers under test as processes;
- ``measure`` and ``report``: latency summaries, process sampling, tables and JSON lines;
- ``gateway_throughput``, ``meter_values``, ``idle_capacity``, ``reconnect_storm``,
  ``ocpi``: the scenarios; ``python -m bench`` runs them all;
- ``anatomy``: the diagnosis beside them, SQL statements and CPU per message in our node.

See docs/PERFORMANCE.md for the latest figures and the exact commands.
"""
