//! Integration tests (one binary).

mod broker;
