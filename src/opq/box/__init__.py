"""The OPQ Box: where a box's raw samples come from (a simulated supply, a replay, a device) and its runtime."""
