//! Built-in filter plugins, compiled from `plugins/` by the build script and embedded.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// Names of the built-in plugins.
pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(name, _, _)| *name).collect()
}

/// A built-in plugin's component and grants.
pub fn get(name: &str) -> Option<(&'static [u8], &'static [&'static str])> {
    BUILTIN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, bytes, grants)| (*bytes, *grants))
}
