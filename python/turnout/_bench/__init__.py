"""The standard routing workloads (W1-W10) as runnable measurements.

Private to turnout: ``turnout bench`` (``turnout.cli``) and the pytest-benchmark suites in
``benches/`` drive it. The pieces:

- ``implementations``: which subject index is measured (the Rust core or the reference);
- ``workloads``: the data of W1-W4 and the measurements made on it;
- ``timing``: the timed loops, best-of-k repeats and latency percentiles;
- ``memory``: resident memory per index entry, measured in a fresh interpreter;
- ``runner``: runs a selection of workloads for each implementation;
- ``report``: the result rows, their JSON form and the text table;
- ``chart``: an SVG bar chart of the speedups;
- ``progress``: the one-line progress display on stderr.
"""
