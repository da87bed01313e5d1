"""`cocoon bench`: the full confidential path measured beside the direct upstream and LiteLLM.

Modules, each with one job:

- `plan`: what to measure (loads, bounds, request shape) as plain structs;
- `loadgen`: the load generator, run as a process of its own;
- `procstats`: CPU time and memory of server processes, from /proc;
- `targets`: starting and stopping the systems under test;
- `report`: JSON, Markdown table, PNG plot and the ratios;
- `progress`: the progress line on stderr;
- `runner`: puts these together for the command;
- `chain`: local chain throughput, transfers and channel redeems (`cocoon bench chain`).
"""
