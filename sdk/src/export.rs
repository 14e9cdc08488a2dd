//! Exporting a [`Filter`] as the component's `init` / `on-request` / `on-response`.
//!
//! [`export_filter!`](crate::export_filter) keeps one [`Instance`] per component instance (a
//! thread-local: a component instance is single-threaded) and forwards the three exports to it.

use std::cell::RefCell;

use crate::{Filter, Flow, Reply, Request, Response};

/// The filter value of one component instance, created by `init`.
#[doc(hidden)]
pub struct Instance<F> {
    filter: RefCell<Option<F>>,
}

impl<F: Filter> Instance<F> {
    /// An instance that has not been initialised yet.
    pub const fn new() -> Self {
        Self {
            filter: RefCell::new(None),
        }
    }

    /// `init`: build the filter from its JSON configuration. A refused configuration leaves the
    /// instance uninitialised (also when an earlier `init` had succeeded).
    pub fn init(&self, config: &str) -> Result<(), String> {
        let built = F::init(config);
        let mut slot = self.filter.borrow_mut();
        match built {
            Ok(filter) => {
                *slot = Some(filter);
                Ok(())
            }
            Err(e) => {
                *slot = None;
                Err(e)
            }
        }
    }

    /// `on-request`; without a successful `init`, a 500 reply instead of a trap.
    pub fn on_request(&self, req: &mut Request<'_>) -> Flow {
        match &*self.filter.borrow() {
            Some(filter) => filter.on_request(req),
            None => Flow::Respond(not_initialised()),
        }
    }

    /// `on-response`; does nothing without a successful `init`.
    pub fn on_response(&self, req: &Request<'_>, resp: &mut Response<'_>) {
        if let Some(filter) = &*self.filter.borrow() {
            filter.on_response(req, resp);
        }
    }
}

impl<F: Filter> Default for Instance<F> {
    fn default() -> Self {
        Self::new()
    }
}

/// Length of the `ferrox:hooks` custom section [`export_filter!`](crate::export_filter) adds.
#[doc(hidden)]
pub const HOOKS_SECTION_LEN: usize = 2;

/// The `ferrox:hooks` custom section of a filter's core module: a format version (1), then a
/// bit set of the hooks that do something (bit 0: `on-request`, bit 1: `on-response`). The
/// gateway skips the calls of hooks not in the set; a component without the section (another
/// SDK, an older build) has both.
#[doc(hidden)]
pub const fn hooks_section<F: Filter>() -> [u8; HOOKS_SECTION_LEN] {
    let mut bits = 0u8;
    if F::ON_REQUEST {
        bits |= 1;
    }
    if F::ON_RESPONSE {
        bits |= 2;
    }
    [1, bits]
}

/// What a filter called before a successful `init` answers.
pub(crate) fn not_initialised() -> Reply {
    Reply::new(500).json(&serde_json::json!({ "error": "filter not initialised" }))
}

/// Export a [`Filter`](crate::Filter) type as this component's filter.
///
/// Invoke it once, at the root of the filter's crate (a `cdylib`), with the type that implements
/// [`Filter`](crate::Filter):
///
/// ```
/// # use ferrox_sdk::Filter;
/// struct Noop;
/// impl Filter for Noop {
///     fn init(_config: &str) -> Result<Self, String> {
///         Ok(Noop)
///     }
/// }
/// ferrox_sdk::export_filter!(Noop);
/// ```
///
/// On `wasm32` it defines the component's `init`, `on-request` and `on-response` exports:
/// `init` builds the filter with [`Filter::init`](crate::Filter::init) and keeps it for the life
/// of the instance; `on-request` before a successful `init` answers 500 instead of trapping.
/// Elsewhere (native builds and `cargo test`) it only checks that the type is a filter, so the
/// same crate builds and unit-tests natively with [`testing`](crate::testing).
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct FerroxFilterExport;

            ::std::thread_local! {
                static FERROX_INSTANCE: $crate::__private::Instance<$filter> =
                    const { $crate::__private::Instance::new() };
            }

            impl $crate::__private::Guest for FerroxFilterExport {
                fn init(
                    config: ::std::string::String,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    FERROX_INSTANCE.with(|instance| instance.init(&config))
                }

                fn on_request(req: &$crate::__private::RawRequest) -> $crate::__private::RawFlow {
                    FERROX_INSTANCE.with(|instance| $crate::__private::on_request(instance, req))
                }

                fn on_response(
                    req: &$crate::__private::RawRequest,
                    resp: &$crate::__private::RawResponse,
                ) {
                    FERROX_INSTANCE
                        .with(|instance| $crate::__private::on_response(instance, req, resp))
                }
            }

            $crate::__private::export_bindings!(
                FerroxFilterExport with_types_in $crate::__private::bindings
            );

            // Tells the gateway which hooks do something (`Filter::ON_REQUEST`/`ON_RESPONSE`).
            #[allow(unsafe_code)]
            #[unsafe(link_section = "ferrox:hooks")]
            #[used]
            static FERROX_HOOKS: [u8; $crate::__private::HOOKS_SECTION_LEN] =
                $crate::__private::hooks_section::<$filter>();
        };

        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(&str) -> ::std::result::Result<$filter, ::std::string::String> =
            <$filter as $crate::Filter>::init;
    };
}
