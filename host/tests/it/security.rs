//! security tests (in progress).
