//! Property tests: the compiled evaluator agrees with a straightforward reference evaluation
//! of random expressions over random messages, and no input makes the parsers panic.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

/// A generated expression: printed as SQL, compiled, and also evaluated by [`reference`].
#[derive(Debug, Clone)]
enum Ast {
    Prop(&'static str),
    Tags,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'static str),
    Cmp(&'static str, Box<Ast>, Box<Ast>),
    Between(Box<Ast>, Box<Ast>, Box<Ast>, bool),
    In(Box<Ast>, Vec<Ast>, bool),
    IsNull(Box<Ast>, bool),
    Text(&'static str, Box<Ast>, Box<Ast>, bool),
    Not(Box<Ast>),
    And(Box<Ast>, Box<Ast>),
    Or(Box<Ast>, Box<Ast>),
}

const NAMES: [&str; 3] = ["a", "b", "c"];
const STRINGS: [&str; 6] = ["x", "y", "10", "2.5", "true", ""];
const VALUES: [&str; 9] = ["1", "2", "10", "2.5", "-3", "x", "y", "true", "FALSE"];

fn leaf() -> impl Strategy<Value = Ast> {
    prop_oneof![
        4 => prop::sample::select(&NAMES[..]).prop_map(Ast::Prop),
        1 => Just(Ast::Tags),
        1 => Just(Ast::Null),
        1 => any::<bool>().prop_map(Ast::Bool),
        2 => (-4i64..12).prop_map(Ast::Int),
        1 => prop::sample::select(&[0.5f64, 2.5, -3.0, 10.0][..]).prop_map(Ast::Float),
        2 => prop::sample::select(&STRINGS[..]).prop_map(Ast::Str),
    ]
}

fn condition() -> impl Strategy<Value = Ast> {
    let simple = prop_oneof![
        (prop::sample::select(&["=", "<>", "<", "<=", ">", ">="][..]), leaf(), leaf()).prop_map(|(op, a, b)| Ast::Cmp(
            op,
            Box::new(a),
            Box::new(b)
        )),
        (leaf(), leaf(), leaf(), any::<bool>()).prop_map(|(v, l, h, n)| Ast::Between(
            Box::new(v),
            Box::new(l),
            Box::new(h),
            n
        )),
        (leaf(), prop::collection::vec(leaf(), 1..4), any::<bool>()).prop_map(|(v, l, n)| Ast::In(Box::new(v), l, n)),
        (leaf(), any::<bool>()).prop_map(|(v, n)| Ast::IsNull(Box::new(v), n)),
        (prop::sample::select(&["CONTAINS", "STARTSWITH", "ENDSWITH"][..]), leaf(), leaf(), any::<bool>())
            .prop_map(|(op, a, b, n)| Ast::Text(op, Box::new(a), Box::new(b), n)),
        leaf(),
    ];
    simple.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|a| Ast::Not(Box::new(a))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Ast::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Ast::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn print(a: &Ast) -> String {
    let not = |n: bool| if n { "NOT " } else { "" };
    match a {
        Ast::Prop(p) => (*p).to_owned(),
        Ast::Tags => "TAGS".into(),
        Ast::Null => "NULL".into(),
        Ast::Bool(b) => if *b { "TRUE" } else { "FALSE" }.into(),
        Ast::Int(i) => i.to_string(),
        Ast::Float(x) => format!("{x:?}"),
        Ast::Str(s) => format!("'{s}'"),
        Ast::Cmp(op, l, r) => format!("{} {op} {}", print(l), print(r)),
        Ast::Between(v, l, h, n) => format!("{} {}BETWEEN {} AND {}", print(v), not(*n), print(l), print(h)),
        Ast::In(v, l, n) => {
            let items: Vec<String> = l.iter().map(print).collect();
            format!("{} {}IN ({})", print(v), not(*n), items.join(", "))
        }
        Ast::IsNull(v, n) => format!("{} IS {}NULL", print(v), not(*n)),
        Ast::Text(op, l, r, n) => format!("{} {}{op} {}", print(l), not(*n), print(r)),
        Ast::Not(a) => format!("NOT ({})", print(a)),
        Ast::And(a, b) => format!("({}) AND ({})", print(a), print(b)),
        Ast::Or(a, b) => format!("({}) OR ({})", print(a), print(b)),
    }
}

/// Four truth values: SQL's three, and "could not evaluate".
#[derive(Debug, Clone, Copy, PartialEq)]
enum R {
    T,
    F,
    U,
    E,
}

#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Bool(bool),
    Num(f64),
    Lit(String),
    Text(String),
}

#[derive(Debug)]
struct Msg {
    tag: Option<String>,
    props: HashMap<&'static str, String>,
}

fn num(s: &str) -> Option<f64> {
    let ok = !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c));
    ok.then(|| s.parse::<f64>().ok()).flatten()
}

fn boolean(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn val(a: &Ast, m: &Msg) -> Result<V, ()> {
    Ok(match a {
        Ast::Prop(p) => m.props.get(p).map_or(V::Null, |v| V::Text(v.clone())),
        Ast::Tags => m.tag.clone().map_or(V::Null, V::Text),
        Ast::Null => V::Null,
        Ast::Bool(b) => V::Bool(*b),
        Ast::Int(i) => V::Num(*i as f64),
        Ast::Float(x) => V::Num(*x),
        Ast::Str(s) => V::Lit((*s).to_owned()),
        cond => match reference(cond, m) {
            R::T => V::Bool(true),
            R::F => V::Bool(false),
            R::U => V::Null,
            R::E => return Err(()),
        },
    })
}

/// `Some(ordering)`, `None` for NULL, `Err` for a type error.
fn cmp(a: &V, b: &V) -> Result<Option<std::cmp::Ordering>, ()> {
    use V::*;
    let numeric = |x: f64, y: f64| Ok(x.partial_cmp(&y));
    match (a, b) {
        (Null, _) | (_, Null) => Ok(None),
        (Num(x), Num(y)) => numeric(*x, *y),
        (Text(t), Num(y)) => numeric(num(t).ok_or(())?, *y),
        (Num(x), Text(t)) => numeric(*x, num(t).ok_or(())?),
        (Text(x), Text(y)) => match (num(x), num(y)) {
            (Some(nx), Some(ny)) => numeric(nx, ny),
            _ => Ok(Some(x.cmp(y))),
        },
        (Text(x) | Lit(x), Text(y) | Lit(y)) => Ok(Some(x.cmp(y))),
        (Bool(x), Bool(y)) => Ok(Some(x.cmp(y))),
        (Text(t), Bool(y)) => Ok(Some(boolean(t).ok_or(())?.cmp(y))),
        (Bool(x), Text(t)) => Ok(Some(x.cmp(&boolean(t).ok_or(())?))),
        _ => Err(()),
    }
}

fn compare(op: &str, a: &V, b: &V) -> R {
    use std::cmp::Ordering::*;
    let o = match cmp(a, b) {
        Err(()) => return R::E,
        Ok(None) => return R::U,
        Ok(Some(o)) => o,
    };
    let is_bool = matches!(a, V::Bool(_)) || matches!(b, V::Bool(_));
    if is_bool && !matches!(op, "=" | "<>") {
        return R::E;
    }
    let t = match op {
        "=" => o == Equal,
        "<>" => o != Equal,
        "<" => o == Less,
        "<=" => o != Greater,
        ">" => o == Greater,
        _ => o != Less,
    };
    if t { R::T } else { R::F }
}

fn all(rs: &[R]) -> R {
    if rs.contains(&R::F) {
        R::F
    } else if rs.contains(&R::E) {
        R::E
    } else if rs.contains(&R::U) {
        R::U
    } else {
        R::T
    }
}

fn any_of(rs: &[R]) -> R {
    if rs.contains(&R::T) {
        R::T
    } else if rs.contains(&R::E) {
        R::E
    } else if rs.contains(&R::U) {
        R::U
    } else {
        R::F
    }
}

fn negate(r: R, n: bool) -> R {
    match (r, n) {
        (R::T, true) => R::F,
        (R::F, true) => R::T,
        (r, _) => r,
    }
}

fn reference(a: &Ast, m: &Msg) -> R {
    let v = |x: &Ast| val(x, m);
    match a {
        Ast::Not(x) => negate(reference(x, m), true),
        Ast::And(x, y) => all(&[reference(x, m), reference(y, m)]),
        Ast::Or(x, y) => any_of(&[reference(x, m), reference(y, m)]),
        Ast::Cmp(op, x, y) => match (v(x), v(y)) {
            (Ok(x), Ok(y)) => compare(op, &x, &y),
            _ => R::E,
        },
        Ast::Between(x, l, h, n) => {
            let Ok(x) = v(x) else { return R::E };
            let low = v(l).map_or(R::E, |l| compare(">=", &x, &l));
            let high = v(h).map_or(R::E, |h| compare("<=", &x, &h));
            negate(all(&[low, high]), *n)
        }
        Ast::In(x, list, n) => {
            let Ok(x) = v(x) else { return R::E };
            let each: Vec<R> = list.iter().map(|i| v(i).map_or(R::E, |i| compare("=", &x, &i))).collect();
            negate(any_of(&each), *n)
        }
        Ast::IsNull(x, n) => match v(x) {
            Ok(x) => negate(if x == V::Null { R::T } else { R::F }, *n),
            Err(()) => R::E,
        },
        Ast::Text(op, x, y, n) => match (v(x), v(y)) {
            (Ok(V::Null), Ok(_)) | (Ok(_), Ok(V::Null)) => R::U,
            (Ok(V::Text(s) | V::Lit(s)), Ok(V::Text(p) | V::Lit(p))) => {
                let t = match *op {
                    "CONTAINS" => s.contains(&p),
                    "STARTSWITH" => s.starts_with(&p),
                    _ => s.ends_with(&p),
                };
                negate(if t { R::T } else { R::F }, *n)
            }
            _ => R::E,
        },
        leaf => match v(leaf) {
            Ok(V::Null) => R::U,
            Ok(V::Bool(b)) => {
                if b {
                    R::T
                } else {
                    R::F
                }
            }
            Ok(V::Text(t)) => boolean(&t).map_or(R::E, |b| if b { R::T } else { R::F }),
            _ => R::E,
        },
    }
}

fn message() -> impl Strategy<Value = Msg> {
    let value = prop::option::of(prop::sample::select(&VALUES[..]));
    (prop::option::of(prop::sample::select(&STRINGS[..])), value.clone(), value.clone(), value).prop_map(
        |(tag, a, b, c)| {
            let props =
                [("a", a), ("b", b), ("c", c)].into_iter().filter_map(|(k, v)| v.map(|v| (k, v.to_owned()))).collect();
            Msg { tag: tag.map(str::to_owned), props }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_evaluator_agrees_with_the_reference(ast in condition(), msgs in prop::collection::vec(message(), 1..8)) {
        let text = print(&ast);
        let filter = SqlFilter::parse(&text).unwrap_or_else(|e| panic!("{text} should compile: {e}"));
        for m in &msgs {
            let props: Vec<(&str, &str)> = m.props.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let got = filter.eval(m.tag.as_deref(), None, props.into_iter());
            let want = reference(&ast, m);
            let agree = match got {
                Ok(true) => want == R::T,
                Ok(false) => want == R::F || want == R::U,
                Err(_) => want == R::E,
            };
            prop_assert!(agree, "{text} on tag {:?} props {:?}: evaluator {got:?}, reference {want:?}", m.tag, m.props);
        }
    }

    #[test]
    fn no_input_makes_the_parsers_panic(
        tokens in prop::collection::vec(prop::sample::select(&[
            "a", "TAGS", "KEY", "'x'", "'", "\"", "1", "-", "2.5e3", "(", ")", ",", "=", "<>", "<", ">=", "AND",
            "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "CONTAINS", "STARTSWITH", "||", "*", "TRUE", " ", "é",
            "\u{0}", ";", "SELECT", "LIKE", "f(", "9999999999999999999999", ".", "[",
        ][..]), 0..24),
        raw in ".{0,40}",
    ) {
        let text: String = tokens.concat();
        let _ = SqlFilter::parse(&text);
        let _ = TagFilter::parse(&text);
        let _ = SqlFilter::parse(&raw);
        let _ = TagFilter::parse(&raw);
    }
}
