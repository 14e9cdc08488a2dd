//! balance tests (in progress).
