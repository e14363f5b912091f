//! Prometheus remote-write 1.0 receiver (being written).
