//! A minimal JSON value and writer (no dependencies beyond libc).

use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Clone, Debug)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Int(i64),
    Str(String),
    Arr(Vec<Json>),
    /// Keys keep their insertion order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn obj() -> Json {
        Json::Obj(Vec::new())
    }

    /// Adds a key to an object (builder style).
    pub fn with(mut self, k: &str, v: impl Into<Json>) -> Json {
        self.set(k, v);
        self
    }

    pub fn set(&mut self, k: &str, v: impl Into<Json>) {
        if let Json::Obj(m) = self {
            m.push((k.to_string(), v.into()));
        } else {
            panic!("Json::set on a non-object");
        }
    }

    pub fn push(&mut self, v: impl Into<Json>) {
        if let Json::Arr(a) = self {
            a.push(v.into());
        } else {
            panic!("Json::push on a non-array");
        }
    }

    pub fn to_pretty(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, 0);
        s.push('\n');
        s
    }

    fn write(&self, s: &mut String, ind: usize) {
        match self {
            Json::Null => s.push_str("null"),
            Json::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => {
                let _ = write!(s, "{i}");
            }
            Json::Num(x) => {
                if x.is_finite() {
                    if x.fract() == 0.0 && x.abs() < 1e15 {
                        let _ = write!(s, "{}", *x as i64);
                    } else {
                        let _ = write!(s, "{}", fmt_sig(*x));
                    }
                } else {
                    s.push_str("null");
                }
            }
            Json::Str(t) => esc(s, t),
            Json::Arr(a) => {
                // Short arrays of scalars stay on one line.
                let flat = a.len() <= 16 && a.iter().all(|v| !matches!(v, Json::Arr(_) | Json::Obj(_)));
                if a.is_empty() {
                    s.push_str("[]");
                } else if flat {
                    s.push('[');
                    for (i, v) in a.iter().enumerate() {
                        if i > 0 {
                            s.push_str(", ");
                        }
                        v.write(s, ind);
                    }
                    s.push(']');
                } else {
                    s.push_str("[\n");
                    for (i, v) in a.iter().enumerate() {
                        pad(s, ind + 1);
                        v.write(s, ind + 1);
                        s.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
                    }
                    pad(s, ind);
                    s.push(']');
                }
            }
            Json::Obj(m) => {
                if m.is_empty() {
                    s.push_str("{}");
                    return;
                }
                s.push_str("{\n");
                for (i, (k, v)) in m.iter().enumerate() {
                    pad(s, ind + 1);
                    esc(s, k);
                    s.push_str(": ");
                    v.write(s, ind + 1);
                    s.push_str(if i + 1 < m.len() { ",\n" } else { "\n" });
                }
                pad(s, ind);
                s.push('}');
            }
        }
    }
}

/// Six significant digits, plain notation where sensible.
fn fmt_sig(x: f64) -> String {
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e12).contains(&a) {
        return format!("{x:e}");
    }
    let digits = if a == 0.0 { 0 } else { (5 - a.log10().floor() as i32).max(0) as usize };
    let t = format!("{x:.digits$}");
    if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    }
}

fn pad(s: &mut String, ind: usize) {
    for _ in 0..ind {
        s.push_str("  ");
    }
}

fn esc(s: &mut String, t: &str) {
    s.push('"');
    for c in t.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

impl From<f64> for Json {
    fn from(x: f64) -> Json {
        Json::Num(x)
    }
}
impl From<i64> for Json {
    fn from(x: i64) -> Json {
        Json::Int(x)
    }
}
impl From<u64> for Json {
    fn from(x: u64) -> Json {
        Json::Int(x as i64)
    }
}
impl From<usize> for Json {
    fn from(x: usize) -> Json {
        Json::Int(x as i64)
    }
}
impl From<u32> for Json {
    fn from(x: u32) -> Json {
        Json::Int(x as i64)
    }
}
impl From<bool> for Json {
    fn from(x: bool) -> Json {
        Json::Bool(x)
    }
}
impl From<&str> for Json {
    fn from(x: &str) -> Json {
        Json::Str(x.to_string())
    }
}
impl From<String> for Json {
    fn from(x: String) -> Json {
        Json::Str(x)
    }
}
impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(x: Option<T>) -> Json {
        x.map_or(Json::Null, Into::into)
    }
}
impl<T: Into<Json>> From<Vec<T>> for Json {
    fn from(v: Vec<T>) -> Json {
        Json::Arr(v.into_iter().map(Into::into).collect())
    }
}
impl From<&BTreeMap<String, i64>> for Json {
    fn from(m: &BTreeMap<String, i64>) -> Json {
        Json::Obj(m.iter().map(|(k, v)| (k.clone(), Json::Int(*v))).collect())
    }
}
