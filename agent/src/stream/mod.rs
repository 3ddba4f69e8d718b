//! Streaming audit records to the central endpoint.
