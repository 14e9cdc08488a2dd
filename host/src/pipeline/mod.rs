//! A route's filter pipeline: request filters in list order until one answers, then response
//! filters of every filter that ran, in reverse order (also for a filter-made answer).
//! A failing filter follows its policy: `closed` → 503 `ferrox-error: filter`, `open` → skipped.
//! A filter that keeps failing is tripped (a circuit breaker per stage) and its policy applies
//! at once, without calling it, until the cool-down lets one call probe it again.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::breaker::{Admission, Breaker, Outcome};
use crate::metrics::Metrics;
use crate::plugin::response_cache::CacheUse;
use crate::plugin::{
    CallOutcome, FilterFailure, FilterPool, Flow, Hooks, Reply, RequestState, ResponseState,
};
use crate::state::CachedResponse;
use prometheus::Histogram;

/// Consecutive failures that trip a filter.
const TRIP_AFTER: u32 = 5;
/// How long a tripped filter is bypassed (by its policy) before a probe call.
const TRIP_COOLDOWN: Duration = Duration::from_secs(10);

/// What a failing filter does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Answer 503 (`ferrox-error: filter`).
    Closed,
    /// Skip the filter and go on.
    Open,
}

/// One filter of a pipeline.
#[derive(Debug)]
pub struct Stage {
    /// Plugin name (metrics label).
    pub plugin: Arc<str>,
    /// Warm instances.
    pub pool: FilterPool,
    /// Failure policy.
    pub on_error: OnError,
    /// The hooks the plugin has (the others are skipped).
    hooks: Hooks,
    /// `ferrox_filter_duration_seconds{plugin, phase}` for the request and response phases,
    /// looked up on the first call of each (not per call; not before, so a phase never called
    /// shows no series).
    durations: [OnceLock<Histogram>; 2],
    trip: Mutex<Breaker>,
}

impl Stage {
    /// A stage over `pool` with `on_error`.
    pub fn new(plugin: Arc<str>, pool: FilterPool, on_error: OnError) -> Self {
        Self {
            plugin,
            hooks: pool.plugin().hooks,
            pool,
            on_error,
            durations: Default::default(),
            trip: Mutex::new(Breaker::new(TRIP_AFTER, TRIP_COOLDOWN)),
        }
    }

    /// The hooks of this stage's plugin that are called.
    pub fn hooks(&self) -> Hooks {
        self.hooks
    }
}

/// How the request phase ended.
#[derive(Debug)]
pub enum RequestOutcome {
    /// Every filter continued: forward the request.
    Forward,
    /// A filter answered.
    Respond(Reply),
    /// A filter looked the request up in the response cache and found it: answer with the
    /// stored response.
    Cached(Arc<CachedResponse>),
    /// A `closed` filter failed: answer 503.
    Failed,
}

/// One filter's part in a request, for logs and the explain view.
#[derive(Clone, Debug)]
pub struct FilterRecord {
    /// Plugin.
    pub plugin: Arc<str>,
    /// `request` or `response`.
    pub phase: &'static str,
    /// `continue`, `respond <status>`, `skipped (<why>)`, `failed (<why>)`, `done`.
    pub decision: String,
    /// When the call started (a span's start when traces are exported).
    pub started: Instant,
    /// Time in the filter, µs.
    pub micros: u64,
    /// Host services it called.
    pub calls: Vec<&'static str>,
}

/// Most filters on one route.
pub const MAX_FILTERS: usize = 32;

/// The stages whose `on-request` completed (bit `i` = stage `i`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ran(u32);

/// The filters of one route.
#[derive(Debug, Default)]
pub struct Pipeline {
    /// Stages in route order.
    pub stages: Vec<Stage>,
}

impl Pipeline {
    /// Whether the route has no filters.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Whether a response hook will run for the stages in `ran`, i.e. whether the request must
    /// be kept for [`Pipeline::on_response`].
    pub fn has_response_hooks(&self, ran: Ran) -> bool {
        self.stages
            .iter()
            .enumerate()
            .any(|(i, stage)| ran.0 & (1 << i) != 0 && stage.hooks.response)
    }

    /// Run request filters. Returns the outcome and the filters whose `on-request` completed
    /// (their response hooks must run): bit `i` for stage `i`.
    pub async fn on_request(
        &self,
        req: &mut Option<RequestState>,
        metrics: &Metrics,
        records: &mut Vec<FilterRecord>,
    ) -> (RequestOutcome, Ran) {
        let mut ran = Ran::default();
        for (i, stage) in self.stages.iter().enumerate() {
            if !stage.hooks.request {
                // Nothing to call: the filter continues, and its response hook runs.
                ran.0 |= 1 << i;
                continue;
            }
            let Some(admission) = admit(stage, metrics, records, "request") else {
                match stage.on_error {
                    OnError::Open => continue,
                    OnError::Closed => return (RequestOutcome::Failed, ran),
                }
            };
            let start = Instant::now();
            let CallOutcome { result, calls } = stage.pool.on_request(req).await;
            let micros = observe(stage, metrics, "request", start);
            match result {
                Ok(flow) => {
                    settle(stage, admission, Outcome::Success);
                    ran.0 |= 1 << i;
                    match flow {
                        Flow::Continue => {
                            let hit = lookup(stage, req, metrics).await;
                            let decision = match hit {
                                Some(_) => "continue (cache hit)",
                                None => "continue",
                            };
                            records.push(record(
                                stage,
                                "request",
                                decision.into(),
                                (start, micros),
                                calls,
                            ));
                            if let Some(entry) = hit {
                                return (RequestOutcome::Cached(entry), ran);
                            }
                        }
                        Flow::Respond(reply) => {
                            records.push(record(
                                stage,
                                "request",
                                format!("respond {}", reply.status),
                                (start, micros),
                                calls,
                            ));
                            return (RequestOutcome::Respond(reply), ran);
                        }
                    }
                }
                Err(failure) => {
                    settle(stage, admission, Outcome::Failure);
                    fail(
                        stage,
                        metrics,
                        records,
                        "request",
                        &failure,
                        (start, micros),
                        calls,
                    );
                    if stage.on_error == OnError::Closed {
                        return (RequestOutcome::Failed, ran);
                    }
                }
            }
        }
        (RequestOutcome::Forward, ran)
    }

    /// Run the response hooks of the stages in `ran`, in reverse order. Returns `false` when a
    /// `closed` filter failed (the response must become a 503).
    pub async fn on_response(
        &self,
        ran: Ran,
        req: &mut Option<RequestState>,
        resp: &mut Option<ResponseState>,
        metrics: &Metrics,
        records: &mut Vec<FilterRecord>,
    ) -> bool {
        for (i, stage) in self.stages.iter().enumerate().rev() {
            if ran.0 & (1 << i) == 0 || !stage.hooks.response {
                continue;
            }
            let Some(admission) = admit(stage, metrics, records, "response") else {
                match stage.on_error {
                    OnError::Open => continue,
                    OnError::Closed => return false,
                }
            };
            let start = Instant::now();
            let CallOutcome { result, calls } = stage.pool.on_response(req, resp).await;
            let micros = observe(stage, metrics, "response", start);
            match result {
                Ok(()) => {
                    settle(stage, admission, Outcome::Success);
                    records.push(record(
                        stage,
                        "response",
                        "done".into(),
                        (start, micros),
                        calls,
                    ));
                }
                Err(failure) => {
                    settle(stage, admission, Outcome::Failure);
                    fail(
                        stage,
                        metrics,
                        records,
                        "response",
                        &failure,
                        (start, micros),
                        calls,
                    );
                    if stage.on_error == OnError::Closed {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// If the filter just asked for a response-cache lookup, do it (in the state store, after the
/// filter's call: no instance is held while the store answers) and settle the request's
/// cache use. A store failure is a bypass, never an error to the client.
async fn lookup(
    stage: &Stage,
    req: &mut Option<RequestState>,
    metrics: &Metrics,
) -> Option<Arc<CachedResponse>> {
    let state = req.as_mut()?;
    let CacheUse::Lookup(key) = &state.cache else {
        return None;
    };
    let store = stage.pool.services().state.load_full();
    let (use_, result, hit) = match store.get_response(key, None).await {
        Ok(Some(entry)) => (CacheUse::Hit, "hit", Some(entry)),
        Ok(None) => (CacheUse::Miss(key.clone()), "miss", None),
        Err(e) => {
            tracing::debug!(plugin = &*stage.plugin, error = %e, "response cache unavailable: bypassed");
            (CacheUse::Unavailable, "error", None)
        }
    };
    metrics
        .cache_lookups
        .with_label_values(&[&*state.route, result])
        .inc();
    state.cache = use_;
    hit
}

fn admit(
    stage: &Stage,
    metrics: &Metrics,
    records: &mut Vec<FilterRecord>,
    phase: &'static str,
) -> Option<Admission> {
    let admission = stage
        .trip
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .admit(tokio::time::Instant::now());
    if admission == Admission::Rejected {
        metrics
            .filter_failures
            .with_label_values(&[&*stage.plugin, "tripped"])
            .inc();
        records.push(record(
            stage,
            phase,
            "skipped (tripped)".into(),
            (Instant::now(), 0),
            Vec::new(),
        ));
        return None;
    }
    Some(admission)
}

fn settle(stage: &Stage, admission: Admission, outcome: Outcome) {
    stage.trip.lock().unwrap_or_else(|e| e.into_inner()).record(
        tokio::time::Instant::now(),
        admission,
        outcome,
    );
}

fn observe(stage: &Stage, metrics: &Metrics, phase: &str, start: Instant) -> u64 {
    let elapsed = start.elapsed();
    let slot = usize::from(phase != "request");
    stage.durations[slot]
        .get_or_init(|| {
            metrics
                .filter_duration
                .with_label_values(&[&*stage.plugin, phase])
        })
        .observe(elapsed.as_secs_f64());
    elapsed.as_micros() as u64
}

fn fail(
    stage: &Stage,
    metrics: &Metrics,
    records: &mut Vec<FilterRecord>,
    phase: &'static str,
    failure: &FilterFailure,
    timing: (Instant, u64),
    calls: Vec<&'static str>,
) {
    metrics
        .filter_failures
        .with_label_values(&[&*stage.plugin, failure.kind()])
        .inc();
    tracing::warn!(plugin = &*stage.plugin, phase, error = %failure, policy = ?stage.on_error, "filter failed");
    records.push(record(
        stage,
        phase,
        format!("failed ({failure})"),
        timing,
        calls,
    ));
}

fn record(
    stage: &Stage,
    phase: &'static str,
    decision: String,
    (started, micros): (Instant, u64),
    calls: Vec<&'static str>,
) -> FilterRecord {
    FilterRecord {
        plugin: stage.plugin.clone(),
        phase,
        decision,
        started,
        micros,
        calls,
    }
}
