"""The OPQ Box: where its raw samples come from (a simulated supply, a replay, a device) and its runtime."""
