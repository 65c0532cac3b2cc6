//! The filter grammar: every operator, precedence, NULL semantics, numeric promotion, and
//! errors with their positions.

use super::*;

fn sql(expression: &str) -> SqlFilter {
    SqlFilter::parse(expression).unwrap_or_else(|e| panic!("{expression:?} should compile: {e}"))
}

fn eval(expression: &str, props: &[(&str, &str)]) -> Result<bool, EvalError> {
    eval_with(expression, None, None, props)
}

fn eval_with(
    expression: &str,
    tag: Option<&str>,
    key: Option<&[u8]>,
    props: &[(&str, &str)],
) -> Result<bool, EvalError> {
    sql(expression).eval(tag, key, props.iter().copied())
}

fn sql_error(expression: &str) -> String {
    SqlFilter::parse(expression).expect_err(expression).to_string()
}

#[test]
fn tag_expressions_match_exactly_and_case_sensitively() {
    let f = TagFilter::parse("TagA || TagB||TagC").unwrap();
    assert!(f.matches(Some("TagA")) && f.matches(Some("TagC")));
    assert!(!f.matches(Some("taga")) && !f.matches(Some("TagAB")) && !f.matches(None));
    assert_eq!(f.canonical(), "TagA || TagB || TagC");
    assert_eq!(TagFilter::parse(" TagB || TagA || TagB ").unwrap().canonical(), "TagA || TagB");
    let all = TagFilter::parse(" * ").unwrap();
    assert!(all.is_all() && all.matches(None) && all.matches(Some("x")));
}

#[test]
fn malformed_tag_expressions_name_the_column_and_what_was_expected() {
    let e = |x: &str| TagFilter::parse(x).expect_err(x).to_string();
    assert_eq!(e(""), "tag filter \"\": expected a tag or `*` at column 1");
    assert_eq!(e("TagA ||"), "tag filter \"TagA ||\": expected a tag after `||` at column 8");
    assert_eq!(e("TagA || || TagB"), "tag filter \"TagA || || TagB\": expected a tag after `||` at column 9");
    assert!(e("Tag A").contains("unexpected ' ' in tag \"Tag A\"") && e("Tag A").contains("column 4"));
    assert!(e("TagA|TagB").contains("unexpected '|'"));
    assert!(e("* || TagA").contains("unexpected '*'"));
}

#[test]
fn a_tag_summary_rules_out_only_batches_without_the_tags() {
    let f = TagFilter::parse("TagA || TagB").unwrap();
    assert!(f.may_match_summary(tag_summary_bit("TagA")));
    assert!(f.may_match_summary(tag_summary_bit("TagB") | tag_summary_bit("Other")));
    assert!(!f.may_match_summary(0), "a batch with no tags holds no match");
    let other = (0..64).map(|i| 1u64 << i).find(|b| b & (tag_summary_bit("TagA") | tag_summary_bit("TagB")) == 0);
    assert!(!f.may_match_summary(other.unwrap()));
    assert!(TagFilter::parse("*").unwrap().may_match_summary(0), "* matches untagged messages");
}

#[test]
fn comparisons_compare_numbers_as_numbers_and_text_as_text() {
    let p = [("price", "150"), ("ratio", "2.5"), ("region", "eu"), ("n", "10")];
    for (expression, expected) in [
        ("price > 100", true),
        ("price >= 150", true),
        ("price < 150", false),
        ("price <= 149.5", false),
        ("price = 150.0", true),
        ("price <> 150", false),
        ("price != 151", true),
        ("ratio > 2", true),
        ("ratio = 2.5", true),
        ("ratio < 3", true),
        ("n > 9", true),
        ("n > '9'", false),
        ("region = 'eu'", true),
        ("region < 'us'", true),
        ("n > ratio", true),
        ("price = -150", false),
        ("-1 < price", true),
    ] {
        assert_eq!(eval(expression, &p), Ok(expected), "{expression}");
    }
}

#[test]
fn between_in_and_text_operators() {
    let p = [("price", "150"), ("region", "eu-west"), ("flag", "TRUE")];
    for (expression, expected) in [
        ("price BETWEEN 100 AND 200", true),
        ("price BETWEEN 151 AND 200", false),
        ("price NOT BETWEEN 151 AND 200", true),
        ("price IN (1, 150, 2)", true),
        ("price IN (1.5, 150.0)", true),
        ("price NOT IN (1, 2)", true),
        ("region IN ('eu', 'us')", false),
        ("region CONTAINS 'west'", true),
        ("region contains 'east'", false),
        ("region NOT CONTAINS 'east'", true),
        ("region STARTSWITH 'eu'", true),
        ("region ENDSWITH 'west'", true),
        ("region NOT ENDSWITH 'west'", false),
        ("flag", true),
        ("flag = TRUE", true),
        ("NOT flag", false),
        ("TRUE", true),
        ("FALSE OR price > 1", true),
    ] {
        assert_eq!(eval(expression, &p), Ok(expected), "{expression}");
    }
}

#[test]
fn and_binds_tighter_than_or_and_not_tighter_than_and() {
    let p = [("a", "1"), ("b", "0"), ("c", "0")];
    assert_eq!(eval("a = 1 OR b = 1 AND c = 1", &p), Ok(true), "a = 1 OR (b = 1 AND c = 1)");
    assert_eq!(eval("(a = 1 OR b = 1) AND c = 1", &p), Ok(false));
    assert_eq!(eval("NOT a = 1 AND b = 0", &p), Ok(false), "(NOT a = 1) AND b = 0");
    assert_eq!(eval("NOT (a = 1 AND b = 1)", &p), Ok(true));
    assert_eq!(eval("a = 1 AND b CONTAINS '0' OR c = 5", &p), Ok(true));
}

#[test]
fn null_is_unknown_and_unknown_never_matches() {
    let none: [(&str, &str); 0] = [];
    for expression in
        ["a = 1", "a <> 1", "NOT (a = 1)", "a BETWEEN 1 AND 2", "a NOT IN (1)", "a CONTAINS 'x'", "a = NULL"]
    {
        assert_eq!(eval(expression, &none), Ok(false), "{expression}");
    }
    assert_eq!(eval("a IS NULL", &none), Ok(true));
    assert_eq!(eval("a IS NOT NULL", &none), Ok(false));
    assert_eq!(eval("a IS NULL", &[("a", "")]), Ok(false), "an empty value is not NULL");
    assert_eq!(eval("a = 1 OR TRUE", &none), Ok(true), "UNKNOWN OR TRUE is TRUE");
    assert_eq!(eval("a = 1 AND FALSE", &none), Ok(false));
    assert_eq!(eval("NOT (a = 1 AND TRUE)", &none), Ok(false), "NOT UNKNOWN is UNKNOWN");
    assert_eq!(eval("x IN (1, NULL)", &[("x", "2")]), Ok(false));
    assert_eq!(eval("x NOT IN (1, NULL)", &[("x", "2")]), Ok(false), "as in SQL: UNKNOWN");
}

#[test]
fn tags_and_key_are_fields_of_the_message() {
    assert_eq!(eval_with("TAGS = 'TagA'", Some("TagA"), None, &[]), Ok(true));
    assert_eq!(eval_with("TAGS IN ('TagB', 'TagA')", Some("TagA"), None, &[]), Ok(true));
    assert_eq!(eval_with("TAGS IS NULL", None, None, &[]), Ok(true));
    assert_eq!(eval_with("KEY STARTSWITH 'order-'", None, Some(b"order-7"), &[]), Ok(true));
    assert_eq!(eval_with("KEY = 7", None, Some(b"7"), &[]), Ok(true));
    assert_eq!(eval_with("KEY = 'x'", None, Some(&[0xff]), &[]), Err(EvalError::KeyNotUtf8));
    // Quoted, or in another case, they are properties.
    assert_eq!(eval_with("\"TAGS\" = 'p'", Some("TagA"), None, &[("TAGS", "p")]), Ok(true));
    assert_eq!(eval_with("tags = 'p'", Some("TagA"), None, &[("tags", "p")]), Ok(true));
}

#[test]
fn quoted_and_dotted_property_names() {
    assert_eq!(eval("\"order-id\" = 5", &[("order-id", "5")]), Ok(true));
    assert_eq!(eval("a.b = 'x'", &[("a.b", "x")]), Ok(true));
    assert_eq!(eval("a = 1", &[("a", "1"), ("a", "2")]), Ok(true), "the first of repeated names counts");
}

#[test]
fn evaluation_errors_are_reported_and_do_not_match() {
    assert_eq!(eval("price > 100", &[("price", "cheap")]), Err(EvalError::NotANumber));
    assert_eq!(eval("price > 100", &[("price", "NaN")]), Err(EvalError::NotANumber));
    assert_eq!(eval("price > 100", &[("price", "inf")]), Err(EvalError::NotANumber));
    assert_eq!(eval("flag", &[("flag", "maybe")]), Err(EvalError::NotABoolean));
    assert_eq!(eval("'a' = 1", &[]), Err(EvalError::TypeMismatch));
    assert_eq!(eval("flag > TRUE", &[("flag", "true")]), Err(EvalError::TypeMismatch));
    assert_eq!(eval("n CONTAINS 1", &[("n", "1")]), Err(EvalError::TypeMismatch));
    // A side that decides the result makes the other side's error irrelevant, in either order.
    assert_eq!(eval("price > 100 OR region = 'eu'", &[("price", "x"), ("region", "eu")]), Ok(true));
    assert_eq!(eval("region = 'eu' OR price > 100", &[("price", "x"), ("region", "eu")]), Ok(true));
    assert_eq!(eval("price > 100 AND region = 'us'", &[("price", "x"), ("region", "eu")]), Ok(false));
    assert_eq!(eval("price > 100 AND region = 'eu'", &[("price", "x"), ("region", "eu")]), Err(EvalError::NotANumber));
}

#[test]
fn malformed_sql_names_the_position_and_what_was_expected() {
    let e = sql_error("price >");
    assert!(e.starts_with("SQL filter \"price >\": Expected: an expression"), "{e}");
    assert!(e.contains("Line: 1, Column: 8"), "{e}");
    let e = sql_error("price > 1 region = 'eu'");
    assert!(e.contains("Expected: end of expression") && e.contains("Column: 11"), "{e}");
    let e = sql_error("region LIKE 'eu%'");
    assert!(e.contains("LIKE is not supported in filters") && e.contains("Column: 1"), "{e}");
    let e = sql_error("a = 1 AND upper(b) = 'X'");
    assert!(e.contains("a function call is not supported") && e.contains("Column: 11"), "{e}");
    assert!(sql_error("a + 1 > 2").contains("the operator + is not supported"));
    assert!(sql_error("a = 'unterminated").contains("Unterminated string literal"));
    assert!(sql_error("a = x'00'").contains("not supported"));
    let many: Vec<String> = (0..=MAX_PROPERTIES).map(|i| format!("p{i} = 1")).collect();
    assert!(sql_error(&many.join(" AND ")).contains("at most 16"));
    let deep = format!("{}a = 1{}", "(".repeat(200), ")".repeat(200));
    assert!(sql_error(&deep).contains("nested deeper than"));
    assert!(sql_error(&"a".repeat(MAX_SQL_EXPRESSION_BYTES + 1)).contains("at most 4096"));
}

#[test]
fn a_filter_is_tags_and_sql_together() {
    use crate::record::{BatchBuilder, ProducerStamp, Record, RecordBatch};
    assert_eq!(Filter::compile("", " ").unwrap(), None);
    assert_eq!(Filter::compile("*", "").unwrap(), None, "`*` alone selects everything");
    let f = Filter::compile("TagA || TagB", "price > 100").unwrap().unwrap();
    let mut builder = BatchBuilder::new(ProducerStamp::NONE, 256);
    let record = |tag: &str, price: &str| Record {
        tag: (!tag.is_empty()).then(|| tag.to_owned()),
        properties: vec![("price".into(), price.into())],
        ..Record::new("v", 1)
    };
    for r in [record("TagA", "150"), record("TagC", "150"), record("TagB", "50"), record("", "500")] {
        builder.push(&r);
    }
    let batch = RecordBatch::parse(builder.finish()).unwrap();
    let matched: Vec<bool> = batch.records().map(|r| f.matches(&r.unwrap()).unwrap()).collect();
    assert_eq!(matched, [true, false, false, false]);
    assert!(f.batch_may_match(batch.header()));
    let mut untagged = BatchBuilder::new(ProducerStamp::NONE, 64);
    untagged.push(&record("", "500"));
    let untagged = RecordBatch::parse(untagged.finish()).unwrap();
    assert!(!f.batch_may_match(untagged.header()), "no tag of the filter can be in it");
    assert!(Filter::compile("", "price > 100").unwrap().unwrap().batch_may_match(untagged.header()));
    assert!(Filter::compile("TagA ||", "").is_err() && Filter::compile("", "price >").is_err());
}
