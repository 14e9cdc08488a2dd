//! streaming tests (in progress).
