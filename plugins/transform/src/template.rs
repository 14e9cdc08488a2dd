//! Templated values: literal text with `$consumer`, `$request_id`, `$client_ip` and `$route`
//! (also written `${name}`), and `$$` for a literal `$`. Parsed once at `init`, rendered per
//! request.

use ferrox_sdk::Request;

/// A value the gateway knows about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var {
    /// The consumer an earlier filter authenticated; empty when there is none.
    Consumer,
    /// The request id (the `x-request-id` the client receives).
    RequestId,
    /// The client's address.
    ClientIp,
    /// The route's name.
    Route,
}

impl Var {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "consumer" => Self::Consumer,
            "request_id" => Self::RequestId,
            "client_ip" => Self::ClientIp,
            "route" => Self::Route,
            _ => return None,
        })
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

const KNOWN: &str = "$consumer, $request_id, $client_ip, $route";

impl Template {
    /// Parse `text`; an unknown `$name`, a lone `$` or an unclosed `${` is an error.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            lit.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, tail) = if let Some(after) = after.strip_prefix('$') {
                lit.push('$');
                rest = after;
                continue;
            } else if let Some(inner) = after.strip_prefix('{') {
                let end = inner
                    .find('}')
                    .ok_or_else(|| format!("unclosed `${{` in {text:?}"))?;
                (&inner[..end], &inner[end + 1..])
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                if end == 0 {
                    return Err(format!(
                        "a `$` not followed by a variable name in {text:?} (write `$$` for a literal `$`)"
                    ));
                }
                (&after[..end], &after[end..])
            };
            let var = Var::from_name(name).ok_or_else(|| {
                format!(
                    "unknown variable `${name}` in {text:?} (known: {KNOWN}; write `$$` for a literal `$`)"
                )
            })?;
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(var));
            rest = tail;
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Self { parts })
    }

    /// The literal text of a template without variables.
    pub(crate) fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// Every literal piece (for validating them at `init`).
    pub(crate) fn literals(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Lit(s) => Some(s.as_str()),
            Part::Var(_) => None,
        })
    }

    /// The text with each variable replaced by its value.
    pub(crate) fn render(&self, vars: &Vars) -> String {
        if let Some(lit) = self.as_literal() {
            return lit.to_owned();
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => out.push_str(vars.get(*v)),
            }
        }
        out
    }
}

/// The variables of one request, fetched once per hook and only those the section's templates use.
#[derive(Debug, Default)]
pub(crate) struct Vars {
    consumer: String,
    request_id: String,
    client_ip: String,
    route: String,
}

/// Which variables a set of templates uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Uses {
    consumer: bool,
    request_id: bool,
    client_ip: bool,
    route: bool,
}

impl Uses {
    /// Add the variables `template` uses.
    pub(crate) fn add(&mut self, template: &Template) {
        for part in &template.parts {
            match part {
                Part::Var(Var::Consumer) => self.consumer = true,
                Part::Var(Var::RequestId) => self.request_id = true,
                Part::Var(Var::ClientIp) => self.client_ip = true,
                Part::Var(Var::Route) => self.route = true,
                Part::Lit(_) => {}
            }
        }
    }
}

impl Vars {
    /// Ask the gateway for the variables in `uses`.
    pub(crate) fn fetch(req: &Request<'_>, uses: Uses) -> Self {
        let ask = |used: bool, f: &dyn Fn() -> String| if used { f() } else { String::new() };
        Self {
            consumer: ask(uses.consumer, &|| req.consumer().unwrap_or_default()),
            request_id: ask(uses.request_id, &|| req.request_id()),
            client_ip: ask(uses.client_ip, &|| req.client_ip()),
            route: ask(uses.route, &|| req.route()),
        }
    }

    fn get(&self, var: Var) -> &str {
        match var {
            Var::Consumer => &self.consumer,
            Var::RequestId => &self.request_id,
            Var::ClientIp => &self.client_ip,
            Var::Route => &self.route,
        }
    }
}
