//! Lookout's HTTP query APIs.
