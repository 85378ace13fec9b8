//! Python's way of writing values, where a chat template's output depends on it.
//!
//! - The `tojson` filter as transformers defines it for chat templates: Python's
//!   `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`,
//!   each argument settable from the template. Jinja's and minijinja's own `tojson` escape
//!   `<`, `>`, `&` and `'` for HTML and space items differently, which would change the
//!   prompt (tool schemas are printed with it).
//! - Printing (`{{ value }}`) of floats, lists and dicts as Python's `str()` does
//!   (`1e+20`, `[1, 'a', None]`, `{'k': 1.5}`); minijinja already prints strings, None and
//!   booleans as Python does.
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// Deeper nesting than this is refused rather than risking the stack on a pathological
/// value.
const MAX_DEPTH: usize = 256;

pub(crate) fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let separators = kwargs.get::<Option<Value>>("separators")?;
    kwargs.assert_all_used()?;

    // Python: an int indents by that many spaces (none for 0 or less, but still one item
    // per line), a string indents by itself, None writes everything on one line.
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) if v.kind() == ValueKind::Bool => Some(if v.is_true() { " ".to_string() } else { String::new() }),
        Some(v) => match (v.as_str(), v.as_i64()) {
            (Some(s), _) => Some(s.to_string()),
            (None, Some(n)) => Some(" ".repeat(n.max(0) as usize)),
            _ => return Err(bad("tojson: indent must be an integer, a string or none")),
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() && !v.is_undefined() => {
            let parts: Vec<Value> = v.try_iter().map_err(|_| bad("tojson: separators must be a pair of strings"))?.collect();
            match parts.as_slice() {
                [a, b] if a.as_str().is_some() && b.as_str().is_some() => {
                    (a.as_str().unwrap_or_default().to_string(), b.as_str().unwrap_or_default().to_string())
                }
                _ => return Err(bad("tojson: separators must be a pair of strings")),
            }
        }
        // Python's default drops the space after commas when indenting.
        _ => (if indent.is_some() { "," } else { ", " }.to_string(), ": ".to_string()),
    };
    let mut w = Writer { out: String::new(), indent, item_sep, key_sep, ensure_ascii, sort_keys };
    w.value(value, 0)?;
    Ok(Value::from(w.out))
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

struct Writer {
    out: String,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    ensure_ascii: bool,
    sort_keys: bool,
}

impl Writer {
    fn value(&mut self, v: &Value, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(bad("tojson: the value is nested too deeply"));
        }
        match v.kind() {
            ValueKind::None => self.out.push_str("null"),
            ValueKind::Bool => self.out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number => self.out.push_str(&number_text(v)),
            ValueKind::String => {
                let s = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                self.string(&s);
            }
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = v.try_iter()?.collect();
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    self.item(i == 0, depth + 1);
                    self.value(item, depth + 1)?;
                }
                self.close(']', items.is_empty(), depth);
            }
            ValueKind::Map => {
                let mut entries = Vec::new();
                for key in v.try_iter()? {
                    let item = v.get_item(&key)?;
                    entries.push((self.key(&key)?, item));
                }
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.out.push('{');
                for (i, (key, item)) in entries.iter().enumerate() {
                    self.item(i == 0, depth + 1);
                    self.string(key);
                    self.out.push_str(&self.key_sep);
                    self.value(item, depth + 1)?;
                }
                self.close('}', entries.is_empty(), depth);
            }
            ValueKind::Undefined => return Err(bad("tojson: cannot serialize an undefined value")),
            other => return Err(bad(format!("tojson: cannot serialize a value of type {other}"))),
        }
        Ok(())
    }

    /// A map key as Python's json converts it: strings as they are, numbers, booleans and
    /// None to their JSON text.
    fn key(&self, key: &Value) -> Result<String, Error> {
        match key.kind() {
            ValueKind::String => Ok(key.as_str().map(str::to_string).unwrap_or_else(|| key.to_string())),
            ValueKind::None => Ok("null".into()),
            ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
            ValueKind::Number => Ok(number_text(key)),
            other => Err(bad(format!("tojson: keys must be strings, numbers, booleans or none, not {other}"))),
        }
    }

    fn item(&mut self, first: bool, depth: usize) {
        if !first {
            self.out.push_str(&self.item_sep);
        }
        if let Some(ind) = &self.indent {
            self.out.push('\n');
            self.out.push_str(&ind.repeat(depth));
        }
    }

    fn close(&mut self, c: char, empty: bool, depth: usize) {
        if let (Some(ind), false) = (&self.indent, empty) {
            self.out.push('\n');
            self.out.push_str(&ind.repeat(depth));
        }
        self.out.push(c);
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '\u{8}' => self.out.push_str("\\b"),
                '\u{c}' => self.out.push_str("\\f"),
                c if (c as u32) < 0x20 => self.out.push_str(&format!("\\u{:04x}", c as u32)),
                // With ensure_ascii everything outside printable ASCII is escaped, in
                // UTF-16 (surrogate pairs above the BMP), as Python does.
                c if self.ensure_ascii && !(' '..='~').contains(&c) => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        self.out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

/// A number as JSON text: Python's repr, with json.dumps' names for the non-finite.
fn number_text(v: &Value) -> String {
    if v.is_integer() {
        // Integers of any width print their digits (Display is exact for them).
        return v.to_string();
    }
    let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
    match float_repr(f).as_str() {
        "nan" => "NaN".into(),
        "inf" => "Infinity".into(),
        "-inf" => "-Infinity".into(),
        other => other.into(),
    }
}

/// How Python's `str()` prints `v`, for the values where it differs from minijinja's
/// own printing (floats, lists, dicts); `None` for the others.
pub(crate) fn py_str(v: &Value) -> Option<String> {
    match v.kind() {
        ValueKind::Number if !v.is_integer() => Some(float_repr(f64::try_from(v.clone()).ok()?)),
        ValueKind::Seq | ValueKind::Map => {
            let mut out = String::new();
            py_repr(v, &mut out, 0);
            Some(out)
        }
        _ => None,
    }
}

/// Python's `repr()` of a value inside a list or dict.
fn py_repr(v: &Value, out: &mut String, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    match v.kind() {
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number if v.is_integer() => out.push_str(&v.to_string()),
        ValueKind::Number => out.push_str(&float_repr(f64::try_from(v.clone()).unwrap_or(f64::NAN))),
        // minijinja's debug form of a string is Python's repr (quotes and escapes).
        ValueKind::String => out.push_str(&format!("{v:?}")),
        ValueKind::Seq => {
            out.push('[');
            for (i, item) in v.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&item, out, depth + 1);
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in v.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&key, out, depth + 1);
                out.push_str(": ");
                py_repr(&v.get_item(&key).unwrap_or_default(), out, depth + 1);
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
}

/// Python's `repr(float)` (which `str()` and json.dumps use too): the shortest digits
/// that read back to the same value, in positional notation for exponents -4 to 15 and in
/// scientific notation (`1e+20`, `1.5e-07`) outside.
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits as Python: "d.ddde-x".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let body = if exp < 0 {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        } else {
            let point = exp as usize + 1;
            if digits.len() <= point {
                format!("{}{}.0", digits, "0".repeat(point - digits.len()))
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            }
        };
        format!("{sign}{body}")
    } else {
        let mant = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mant}e{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::float_repr;

    #[test]
    fn floats_print_as_python_repr() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e20, "1.5e+20"),
            (123456789012345.6, "123456789012345.6"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (2.5e-300, "2.5e-300"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(float_repr(f), want, "{f}");
        }
    }
}
