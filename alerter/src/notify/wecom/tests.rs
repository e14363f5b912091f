//! WeCom tests.
