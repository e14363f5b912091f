//! `promtool test rules` unit-test files run against Lookout's evaluator.
