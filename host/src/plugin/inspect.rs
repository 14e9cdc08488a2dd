//! What a component imports and exports, and whether this gateway accepts it
//! (`ferrox plugin inspect`).

use wasmtime::component::types::ComponentItem;

use super::{PluginEngine, SERVICES};

/// A component's interface as the gateway sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentInfo {
    /// Every import, by full name (`ferrox:filter/log@0.1.0`, `wasi:cli/stdout@0.2.0`, …).
    pub imports: Vec<String>,
    /// Every export, by name, with its kind (`func`, `instance`, …).
    pub exports: Vec<(String, &'static str)>,
    /// The `ferrox:filter` package version it was built against, when it imports its types.
    pub filter_version: Option<String>,
    /// The host services (`log`, `clock`, …) it imports: the grants it needs.
    pub services: Vec<String>,
    /// Imports of `ferrox:filter` interfaces this gateway does not know.
    pub unknown_services: Vec<String>,
}

fn kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "func",
        ComponentItem::CoreFunc(_) => "core func",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

/// Compile (or load from the artifact cache) `bytes` and describe its imports and exports.
pub fn describe(bytes: &[u8]) -> Result<ComponentInfo, String> {
    let engine = PluginEngine::global()?;
    let (component, _) = engine.load(bytes).map_err(|e| e.to_string())?;
    let ty = component.component_type();
    let mut info = ComponentInfo::default();
    for (name, _) in ty.imports(engine.engine()) {
        info.imports.push(name.to_owned());
        let Some(rest) = name.strip_prefix("ferrox:filter/") else {
            continue;
        };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        if iface == "types" {
            info.filter_version = Some(version.to_owned());
        } else if SERVICES.contains(&iface) {
            info.services.push(iface.to_owned());
        } else {
            info.unknown_services.push(iface.to_owned());
        }
    }
    for (name, item) in ty.exports(engine.engine()) {
        info.exports.push((name.to_owned(), kind(&item.ty)));
    }
    info.imports.sort();
    info.services.sort();
    Ok(info)
}
