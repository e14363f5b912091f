//! Runs rule groups on their intervals, persists alert state, serves rule status.
