//! lifecycle tests (in progress).
