//! Provider conformance suite (filled in next).
