//! Approval latency harness.
