//! DingTalk tests.
