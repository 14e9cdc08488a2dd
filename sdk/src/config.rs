//! Helpers for parsing a filter's configuration the way the built-in filters do, so that
//! durations and header names read the same in every filter's config.

/// Parse a duration such as `"500ms"`, `"60s"`, `"5m"`, `"1h"` or `"1d"` into milliseconds.
///
/// ```
/// use ferrox_sdk::config::parse_duration_ms;
/// assert_eq!(parse_duration_ms("5m"), Ok(300_000));
/// assert!(parse_duration_ms("0s").is_err());
/// ```
///
/// # Errors
///
/// A message naming the text when it is not a positive whole number followed by a unit.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{text:?} is not a duration: write a whole number and a unit (ms, s, m, h, d), \
                 e.g. \"60s\""
            ));
        }
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!("{text:?} is not a duration: it must start with a whole number, e.g. \"60s\"")
    })?;
    let ms = n
        .checked_mul(unit_ms)
        .ok_or_else(|| format!("{text:?} is too long"))?;
    if ms == 0 {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(ms)
}

/// A header name as configured: an HTTP token, returned lowercased.
///
/// ```
/// use ferrox_sdk::config::header_name;
/// assert_eq!(header_name("X-User").as_deref(), Ok("x-user"));
/// assert!(header_name("bad name").is_err());
/// ```
///
/// # Errors
///
/// `not a valid header name: "<name>"`.
pub fn header_name(name: &str) -> Result<String, String> {
    const TOKEN_EXTRA: &[u8] = b"!#$%&'*+-.^_`|~";
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || TOKEN_EXTRA.contains(&b))
    {
        return Err(format!("not a valid header name: {name:?}"));
    }
    Ok(name.to_ascii_lowercase())
}
