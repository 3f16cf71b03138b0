//! The AWS query and EC2 protocols: form-encoded requests (`Action=...&Version=...`, in a
//! `POST` body or a `GET` query string) and XML responses.
//!
//! Contract (what botocore's `QuerySerializer`/`EC2Serializer` send and its `QueryParser`/
//! `EC2QueryParser` read; the generated `from_form`/`write_xml` of each shape follow it):
//! * a member travels under its serialized name joined to its parent's with `.`; lists are
//!   `Name.1`, `Name.2`... (EC2, and flattened query lists) or `Name.member.N` (query); maps
//!   `Name.entry.N.key` / `.value`; an empty query list is the bare `Name=`;
//! * a value that does not parse, an enum value the model does not list, or a number or
//!   string length outside the model's `min`/`max`, is the flavour's
//!   validation error naming the parameter by its full key (`IpPermissions.1.FromPort`); a
//!   missing `required` member is `MissingParameter` naming it;
//! * responses: EC2 `<OpResponse xmlns=NS><requestId>..</requestId>members</OpResponse>`
//!   (`<return>true</return>` for operations without output); query `<OpResponse xmlns=NS>
//!   <OpResult>members</OpResult><ResponseMetadata><RequestId>..</RequestId>
//!   </ResponseMetadata></OpResponse>`; members by their `locationName`, list items as the
//!   model names them (`item` in EC2), booleans `true`/`false`, timestamps ISO 8601 UTC;
//! * errors: EC2 `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/>
//!   </Response>`; query `<ErrorResponse><Error><Type>Sender|Receiver</Type><Code/><Message/>
//!   </Error><RequestId/></ErrorResponse>`.
//!
//! All XML is written with quick-xml (escaping included), all forms read with
//! form_urlencoded: nothing here escapes or unescapes by hand.

use std::collections::BTreeMap;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use crate::AwsError;

/// Which of the two form-encoded protocols a service speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// EC2's (`ec2` in botocore).
    Ec2,
    /// The query protocol (STS, IAM, Auto Scaling, ELBv2...).
    Query,
}

impl Flavor {
    /// The error code for a value that breaks the model.
    pub fn validation_code(self) -> &'static str {
        match self {
            Flavor::Ec2 => "InvalidParameterValue",
            Flavor::Query => "ValidationError",
        }
    }

    /// A value of parameter `key` that the model does not allow.
    pub fn invalid(self, key: &str, value: &str, why: &str) -> AwsError {
        AwsError::new(
            self.validation_code(),
            400,
            format!("Value ({value}) for parameter {key} is invalid. {why}"),
        )
    }

    /// A `required` parameter is absent.
    pub fn missing(self, key: &str) -> AwsError {
        AwsError::new(
            "MissingParameter",
            400,
            format!("The request must contain the parameter {key}"),
        )
    }

    /// An operation of the model that Berth does not implement.
    pub fn unsupported_operation(self, action: &str) -> AwsError {
        let code = match self {
            Flavor::Ec2 => "UnsupportedOperation",
            Flavor::Query => "InvalidAction",
        };
        AwsError::new(
            code,
            400,
            format!(
                "Berth does not implement the operation {action} yet (see the Status section of Berth's README)."
            ),
        )
    }

    /// An `Action` that names no operation of the model.
    pub fn invalid_action(self, action: &str) -> AwsError {
        AwsError::new(
            "InvalidAction",
            400,
            format!("The action {action} is not valid for this web service."),
        )
    }

    /// The response document of operation `op` with `output` as its members.
    pub fn response<T: ToXml>(
        self,
        op: &str,
        namespace: &str,
        result_wrapper: Option<&str>,
        has_output: bool,
        request_id: &str,
        output: &T,
    ) -> Vec<u8> {
        let mut w = XmlOut::document();
        let root = format!("{op}Response");
        w.open_ns(&root, namespace);
        match self {
            Flavor::Ec2 => {
                w.text("requestId", request_id);
                if has_output {
                    output.write_xml(&mut w);
                } else {
                    w.text("return", "true");
                }
            }
            Flavor::Query => {
                match result_wrapper {
                    Some(wrapper) => {
                        w.open(wrapper);
                        output.write_xml(&mut w);
                        w.close(wrapper);
                    }
                    None => output.write_xml(&mut w),
                }
                w.open("ResponseMetadata");
                w.text("RequestId", request_id);
                w.close("ResponseMetadata");
            }
        }
        w.close(&root);
        w.finish()
    }

    /// The error document for `e`.
    pub fn error_body(self, e: &AwsError, namespace: &str, request_id: &str) -> Vec<u8> {
        let mut w = XmlOut::document();
        match self {
            Flavor::Ec2 => {
                w.open("Response");
                w.open("Errors");
                w.open("Error");
                w.text("Code", e.code);
                w.text("Message", &e.message);
                w.close("Error");
                w.close("Errors");
                w.text("RequestID", request_id);
                w.close("Response");
            }
            Flavor::Query => {
                w.open_ns("ErrorResponse", namespace);
                w.open("Error");
                w.text("Type", if e.status >= 500 { "Receiver" } else { "Sender" });
                w.text("Code", e.code);
                w.text("Message", &e.message);
                w.close("Error");
                w.text("RequestId", request_id);
                w.close("ErrorResponse");
            }
        }
        w.finish()
    }
}

/// `parent.member`, or `member` at the root.
pub fn join(parent: &str, member: &str) -> String {
    if parent.is_empty() { member.to_string() } else { format!("{parent}.{member}") }
}

/// `key` with its last segment replaced by `name` (a flattened query list whose member has
/// its own name).
pub fn sibling(key: &str, name: &str) -> String {
    match key.rsplit_once('.') {
        Some((parent, _)) => format!("{parent}.{name}"),
        None => name.to_string(),
    }
}

/// A request's form parameters.
#[derive(Clone, Debug)]
pub struct Form {
    params: BTreeMap<String, String>,
    flavor: Flavor,
}

impl Form {
    /// Parses `application/x-www-form-urlencoded` bytes (a body, or a URL's query string).
    /// A parameter given twice keeps its first value.
    pub fn parse(bytes: &[u8], flavor: Flavor) -> Self {
        let mut params = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(bytes) {
            params.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Self { params, flavor }
    }

    /// A form from explicit pairs (tests).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        flavor: Flavor,
    ) -> Self {
        let params = pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self { params, flavor }
    }

    /// The protocol flavour the form is read with.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// Every parameter, in key order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether any parameter lies under `key.`.
    pub fn has_under(&self, key: &str) -> bool {
        let start = format!("{key}.");
        self.params.range(start.clone()..).next().is_some_and(|(k, _)| k.starts_with(&start))
    }

    /// The missing-parameter error for `key`.
    pub fn missing(&self, key: &str) -> AwsError {
        self.flavor.missing(key)
    }

    /// A string member.
    pub fn string(&self, key: &str) -> Option<String> {
        self.params.get(key).cloned()
    }

    /// A boolean member (`true`/`false`, any case).
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, AwsError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        match v.to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(self.flavor.invalid(key, v, "Expected true or false.")),
        }
    }

    /// An integer member.
    pub fn integer<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, AwsError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        v.trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| self.flavor.invalid(key, v, "Expected an integer in range."))
    }

    /// A string member whose length the model bounds (in characters).
    pub fn string_len(
        &self,
        key: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<String>, AwsError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let n = v.chars().count();
        if n < min || n > max {
            let range = if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(self.flavor.invalid(
                key,
                v,
                &format!("Its length must be {range} characters."),
            ));
        }
        Ok(Some(v.to_string()))
    }

    /// An integer member the model bounds to `min..=max`.
    pub fn integer_in<T: std::str::FromStr + Into<i64> + Copy>(
        &self,
        key: &str,
        min: i64,
        max: i64,
    ) -> Result<Option<T>, AwsError> {
        let Some(x) = self.integer::<T>(key)? else { return Ok(None) };
        if !(min..=max).contains(&x.into()) {
            let v = self.get(key).unwrap_or_default();
            return Err(self.flavor.invalid(
                key,
                v,
                &format!("Expecting a value between {min} and {max}."),
            ));
        }
        Ok(Some(x))
    }

    /// A floating-point member.
    pub fn float(&self, key: &str) -> Result<Option<f64>, AwsError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        match v.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(self.flavor.invalid(key, v, "Expected a number.")),
        }
    }

    /// A timestamp member: ISO 8601 (as botocore sends it) or epoch seconds.
    pub fn timestamp(&self, key: &str) -> Result<Option<f64>, AwsError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        parse_timestamp(v)
            .map(Some)
            .ok_or_else(|| self.flavor.invalid(key, v, "Expected an ISO 8601 timestamp."))
    }

    /// A member whose values the model enumerates.
    pub fn enumeration<T>(
        &self,
        key: &str,
        parse: fn(&str) -> Option<T>,
        values: &[&str],
    ) -> Result<Option<T>, AwsError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        parse(v).map(Some).ok_or_else(|| {
            self.flavor.invalid(key, v, &format!("Valid values: {}.", values.join(", ")))
        })
    }

    /// The indices present under `base.` (`base.1`, `base.2.Name`...), sorted.
    fn indices(&self, base: &str) -> Vec<u64> {
        let start = format!("{base}.");
        let mut out: Vec<u64> = self
            .params
            .range(start.clone()..)
            .take_while(|(k, _)| k.starts_with(&start))
            .filter_map(|(k, _)| {
                let rest = &k[start.len()..];
                let n = rest.split('.').next().unwrap_or("");
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                n.parse().ok()
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// A list member: items at `key.N` (or `key.<member>.N`), in index order; the bare
    /// `key=` (query's empty list) is an empty list.
    pub fn list<T>(
        &self,
        key: &str,
        member: Option<&str>,
        read: impl Fn(&Form, &str) -> Result<Option<T>, AwsError>,
    ) -> Result<Option<Vec<T>>, AwsError> {
        let base = match member {
            Some(m) => join(key, m),
            None => key.to_string(),
        };
        let idx = self.indices(&base);
        if idx.is_empty() {
            return Ok(self.get(key).filter(|v| v.is_empty()).map(|_| Vec::new()));
        }
        let mut out = Vec::with_capacity(idx.len());
        for i in idx {
            if let Some(v) = read(self, &format!("{base}.{i}"))? {
                out.push(v);
            }
        }
        Ok(Some(out))
    }

    /// A map member: entries at `key.entry.N.key` / `.value` (or without `entry` when
    /// flattened).
    #[allow(clippy::type_complexity)]
    pub fn map<K: Ord, V>(
        &self,
        key: &str,
        entry: Option<&str>,
        key_name: &str,
        value_name: &str,
        read_key: impl Fn(&Form, &str) -> Result<Option<K>, AwsError>,
        read_value: impl Fn(&Form, &str) -> Result<Option<V>, AwsError>,
    ) -> Result<Option<BTreeMap<K, V>>, AwsError> {
        let base = match entry {
            Some(e) => join(key, e),
            None => key.to_string(),
        };
        let idx = self.indices(&base);
        if idx.is_empty() {
            return Ok(None);
        }
        let mut out = BTreeMap::new();
        for i in idx {
            let at = format!("{base}.{i}");
            let k = read_key(self, &join(&at, key_name))?
                .ok_or_else(|| self.missing(&join(&at, key_name)))?;
            let v = read_value(self, &join(&at, value_name))?
                .ok_or_else(|| self.missing(&join(&at, value_name)))?;
            out.insert(k, v);
        }
        Ok(Some(out))
    }
}

/// A shape read from a form.
pub trait FromForm: Sized {
    /// The value under `key` (`""`: the request root); `None` when the form has nothing
    /// there.
    fn from_form(f: &Form, key: &str) -> Result<Option<Self>, AwsError>;
}

/// A shape written as XML members.
pub trait ToXml {
    /// Writes the shape's members (not an enclosing element).
    fn write_xml(&self, w: &mut XmlOut);
}

/// An XML document being written.
pub struct XmlOut {
    w: Writer<Vec<u8>>,
}

impl XmlOut {
    /// A document with its XML declaration.
    pub fn document() -> Self {
        let mut w = Writer::new(Vec::with_capacity(512));
        // Writing to a Vec cannot fail.
        let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        Self { w }
    }

    /// `<name>`.
    pub fn open(&mut self, name: &str) {
        let _ = self.w.write_event(Event::Start(BytesStart::new(name)));
    }

    /// `<name xmlns="namespace">`.
    pub fn open_ns(&mut self, name: &str, namespace: &str) {
        let mut start = BytesStart::new(name);
        if !namespace.is_empty() {
            start.push_attribute(("xmlns", namespace));
        }
        let _ = self.w.write_event(Event::Start(start));
    }

    /// `</name>`.
    pub fn close(&mut self, name: &str) {
        let _ = self.w.write_event(Event::End(BytesEnd::new(name)));
    }

    /// `<name>value</name>`, `value` escaped.
    pub fn text(&mut self, name: &str, value: &str) {
        self.open(name);
        let _ = self.w.write_event(Event::Text(BytesText::new(value)));
        self.close(name);
    }

    /// The document's bytes.
    pub fn finish(self) -> Vec<u8> {
        self.w.into_inner()
    }
}

/// `secs` (epoch seconds) as ISO 8601 UTC with milliseconds: `2026-12-01T22:14:18.000Z`.
pub fn iso8601(secs: f64) -> String {
    let ms = (secs * 1000.0).round() as i64;
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
    let (min, rem) = (rem / 60_000, rem % 60_000);
    let (s, ms) = (rem / 1000, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
}

/// Parses ISO 8601 (`YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM]`) or epoch seconds.
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(x) = s.parse::<f64>() {
        return x.is_finite().then_some(x);
    }
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        frac = format!("0.{}", &r[..n]).parse().ok()?;
        rest = &r[n..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let hh: i64 = o.get(1..3)?.parse().ok()?;
            let mm: i64 = o.get(4..6)?.parse().ok()?;
            sign * (hh * 3600 + mm * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset) as f64 + frac)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests;
