"""Murmur's benchmark: a DeathStarBench-style workload through the gateway, with baselines.

``python -m bench run`` starts a private platform on free ports and writes results as JSON;
``python -m bench report`` renders ``docs/benchmarks.md`` and its plots from that JSON.
"""
