//! Header storage with the gateway's rules: case-insensitive names, values read back only when
//! they are visible ASCII, framing and hop-by-hop headers refused, a cap on how many a filter
//! may add.

use crate::{MANAGED_HEADERS as MANAGED, MAX_HEADERS};

/// How an edit treats the values already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edit {
    /// Replace every value of the header.
    Replace,
    /// Add one more value.
    Append,
}

/// `(lowercase name, value)` pairs in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Headers(Vec<(String, String)>);

impl Headers {
    /// Store a header as it arrived (test setup: no rules applied beyond lowercasing the name).
    pub(crate) fn push_raw(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_owned()));
    }

    pub(crate) fn pairs(&self) -> Vec<(String, String)> {
        self.0.clone()
    }

    /// The first value of `name`, if it is text.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.values(name)
            .next()
            .filter(|v| is_text(v))
            .map(str::to_owned)
    }

    /// Every value of `name` that is text, in order.
    pub(crate) fn get_all(&self, name: &str) -> Vec<String> {
        self.values(name)
            .filter(|v| is_text(v))
            .map(str::to_owned)
            .collect()
    }

    pub(crate) fn set(&mut self, name: &str, value: &str, edit: Edit) -> Result<(), String> {
        let name = settable_name(name)?;
        if !value
            .bytes()
            .all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t')
        {
            return Err(format!("invalid value for header {name}"));
        }
        let present = self.0.iter().any(|(n, _)| *n == name);
        if self.0.len() >= MAX_HEADERS && !present {
            return Err(format!("more than {MAX_HEADERS} headers"));
        }
        match edit {
            Edit::Replace => {
                // Keep the header where its first value was.
                let at = self.0.iter().position(|(n, _)| *n == name);
                self.0.retain(|(n, _)| *n != name);
                let at = at.unwrap_or(self.0.len());
                self.0.insert(at, (name, value.to_owned()));
            }
            Edit::Append => self.0.push((name, value.to_owned())),
        }
        Ok(())
    }

    /// Remove every value of `name`; invalid and gateway-managed names are ignored.
    pub(crate) fn remove(&mut self, name: &str) {
        if let Ok(name) = settable_name(name) {
            self.0.retain(|(n, _)| *n != name);
        }
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The lowercase form of `name` if it is a valid header name a filter may edit.
fn settable_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(format!("{name:?} is not a valid header name"));
    }
    let name = name.to_ascii_lowercase();
    if MANAGED.contains(&name.as_str()) {
        return Err(format!("header {name} is managed by the gateway"));
    }
    Ok(name)
}

/// Whether a value reads back as text (visible ASCII and tabs).
fn is_text(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}
