//! Which hooks of a filter do something, as its component declares in a `ferrox:hooks` custom
//! section (`ferrox-sdk` writes it from `Filter::ON_REQUEST` / `Filter::ON_RESPONSE`). The
//! gateway skips the calls of the others: no instance checkout, no call, no request copy for
//! response hooks nobody has. A component without the section has both hooks.

/// Name of the custom section.
pub const SECTION: &str = "ferrox:hooks";

/// The hooks a filter has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hooks {
    /// `on-request` does something.
    pub request: bool,
    /// `on-response` does something.
    pub response: bool,
}

impl Default for Hooks {
    fn default() -> Self {
        Self::BOTH
    }
}

impl Hooks {
    /// Both hooks: what a component that declares nothing gets.
    pub const BOTH: Self = Self {
        request: true,
        response: true,
    };

    /// The hooks `component` (a component's binary, already validated) declares; both when it
    /// declares nothing, or something this gateway does not understand (a later format).
    pub fn of(component: &[u8]) -> Self {
        match find_section(component, 0) {
            Some([1, bits, ..]) => Self {
                request: bits & 1 != 0,
                response: bits & 2 != 0,
            },
            _ => Self::BOTH,
        }
    }
}

/// Read an unsigned LEB128 `u32` at `*at`.
fn leb_u32(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The contents of the first `ferrox:hooks` custom section in `bytes` (a core module or a
/// component), looking into nested modules and components.
fn find_section(bytes: &[u8], depth: u32) -> Option<&[u8]> {
    if depth > 8 || bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return None;
    }
    // Version and layer: 1/0 for a core module; a component has layer 1.
    let component = bytes[6..8] == [1, 0];
    let mut at = 8;
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let size = leb_u32(bytes, &mut at)? as usize;
        let payload = bytes.get(at..at.checked_add(size)?)?;
        at += size;
        match id {
            0 => {
                let mut p = 0;
                let len = leb_u32(payload, &mut p)? as usize;
                let name = payload.get(p..p.checked_add(len)?)?;
                if name == SECTION.as_bytes() {
                    return Some(&payload[p + len..]);
                }
            }
            // A component's core module (1) or nested component (4).
            1 | 4 if component => {
                if let Some(found) = find_section(payload, depth + 1) {
                    return Some(found);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(name: &str, data: &[u8]) -> Vec<u8> {
        let mut payload = vec![name.len() as u8];
        payload.extend_from_slice(name.as_bytes());
        payload.extend_from_slice(data);
        let mut s = vec![0, payload.len() as u8];
        s.extend(payload);
        s
    }

    fn module(sections: &[Vec<u8>]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        for s in sections {
            m.extend_from_slice(s);
        }
        m
    }

    fn component(module: &[u8]) -> Vec<u8> {
        let mut c = b"\0asm\x0d\0\x01\0".to_vec();
        c.extend(section("other", b"x"));
        c.push(1);
        c.push(module.len() as u8);
        c.extend_from_slice(module);
        c
    }

    #[test]
    fn the_section_is_found_in_the_components_module() {
        let m = module(&[section("name", b"abc"), section(SECTION, &[1, 1])]);
        assert_eq!(
            Hooks::of(&component(&m)),
            Hooks {
                request: true,
                response: false
            }
        );
        let m = module(&[section(SECTION, &[1, 2])]);
        assert_eq!(
            Hooks::of(&component(&m)),
            Hooks {
                request: false,
                response: true
            }
        );
    }

    #[test]
    fn without_a_section_or_with_an_unknown_one_both_hooks_run() {
        assert_eq!(Hooks::of(&component(&module(&[]))), Hooks::BOTH);
        let m = module(&[section(SECTION, &[2, 0])]);
        assert_eq!(Hooks::of(&component(&m)), Hooks::BOTH);
        assert_eq!(Hooks::of(b"not wasm at all"), Hooks::BOTH);
        // Truncated: a section longer than the bytes.
        let mut c = component(&module(&[section(SECTION, &[1, 0])]));
        c.truncate(c.len() - 3);
        assert_eq!(Hooks::of(&c), Hooks::BOTH);
    }

    #[test]
    fn the_built_in_auth_filters_have_no_response_hook() {
        for (name, bytes, _) in crate::builtin::BUILTIN {
            let hooks = Hooks::of(bytes);
            let response = !matches!(*name, "key-auth" | "jwt-auth");
            assert_eq!(
                hooks,
                Hooks {
                    request: true,
                    response
                },
                "{name}"
            );
        }
    }
}
