//! Label matchers: parsing tables, canonical display, matching semantics and positioned errors.

use sluice_rules::{MatchOp, Matcher, MatcherError, format_matchers, parse_matchers};

use crate::labels;

/// Parses `input` as a list and compares the canonical form of the result with `expect`.
fn check(input: &str, expect: &str) {
    let parsed = parse_matchers(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
    assert_eq!(format_matchers(&parsed), expect, "input {input:?}");
    // The canonical form parses back to the same matchers.
    assert_eq!(
        parse_matchers(expect).expect("canonical form parses"),
        parsed
    );
}

/// Asserts `input` fails at `column` with a message containing `needle`.
fn check_err(input: &str, column: usize, needle: &str) {
    match parse_matchers(input) {
        Err(MatcherError::Syntax { column: c, message }) => {
            assert_eq!(c, column, "column for {input:?} ({message})");
            assert!(
                message.contains(needle),
                "{input:?}: {message:?} lacks {needle:?}"
            );
        }
        other => panic!("{input:?}: expected a syntax error, got {other:?}"),
    }
}

#[test]
fn parses_the_four_operators_quoted_and_unquoted() {
    for (input, expect) in [
        (r#"foo="bar""#, r#"{foo="bar"}"#),
        ("foo=bar", r#"{foo="bar"}"#),
        ("  foo =  bar  ", r#"{foo="bar"}"#),
        ("foo!=bar", r#"{foo!="bar"}"#),
        (r#"foo=~"b.*""#, r#"{foo=~"b.*"}"#),
        ("foo=~5..", r#"{foo=~"5.."}"#),
        (r#"foo!~"b.*""#, r#"{foo!~"b.*"}"#),
        (r#"foo="""#, r#"{foo=""}"#),
        ("foo=", r#"{foo=""}"#),
        (r#"_x1="a b""#, r#"{_x1="a b"}"#),
    ] {
        check(input, expect);
    }
}

#[test]
fn parses_lists_with_and_without_braces() {
    for (input, expect) in [
        (r#"{a="b", c=~"d.*"}"#, r#"{a="b", c=~"d.*"}"#),
        (r#"a="b",c=~"d.*""#, r#"{a="b", c=~"d.*"}"#),
        ("a=b, c=d,", r#"{a="b", c="d"}"#),
        ("{ a = b , }", r#"{a="b"}"#),
        ("{}", "{}"),
        ("", "{}"),
        ("   ", "{}"),
    ] {
        check(input, expect);
    }
}

#[test]
fn unescapes_quoted_values_and_keeps_regex_escapes() {
    let m: Matcher = r#"path="a\"b\\c\nd\te""#.parse().expect("parses");
    assert_eq!(m.value(), "a\"b\\c\nd\te");
    assert_eq!(m.to_string(), "path=\"a\\\"b\\\\c\\nd\te\"");
    assert_eq!(m.to_string().parse::<Matcher>().expect("round trip"), m);

    let re: Matcher = r#"id=~"\d+\.x""#.parse().expect("parses");
    assert_eq!(re.value(), r"\d+\.x");
    assert!(re.matches(&labels(&[("id", "123.x")])));
    assert!(!re.matches(&labels(&[("id", "123ax")])));
    // Doubled escapes mean the same regex.
    let doubled: Matcher = r#"id=~"\\d+\\.x""#.parse().expect("parses");
    assert_eq!(doubled, re);
}

#[test]
fn regexes_are_fully_anchored() {
    let m = Matcher::new("job", MatchOp::Re, "api|web").expect("valid");
    for (value, expect) in [
        ("api", true),
        ("web", true),
        ("xapi", false),
        ("webx", false),
    ] {
        assert_eq!(m.matches_value(value), expect, "{value}");
    }
    let not = Matcher::new("job", MatchOp::NotRe, "api.*").expect("valid");
    assert!(!not.matches_value("api-1"));
    assert!(not.matches_value("the-api"));
}

#[test]
fn a_missing_label_matches_as_the_empty_string() {
    let none = labels(&[("service", "api")]);
    let with = labels(&[("service", "api"), ("team", "core")]);
    let cases = [
        (r#"team="""#, true, false),
        (r#"team!="""#, false, true),
        (r#"team=~".*""#, true, true),
        (r#"team=~".+""#, false, true),
        (r#"team!~"core""#, true, false),
        (r#"team="core""#, false, true),
    ];
    for (text, on_missing, on_present) in cases {
        let m: Matcher = text.parse().expect("parses");
        assert_eq!(m.matches(&none), on_missing, "{text} without team");
        assert_eq!(m.matches(&with), on_present, "{text} with team");
    }
}

#[test]
fn errors_name_the_column_and_the_problem() {
    check_err(r#"1foo="x""#, 1, "expected a label name");
    check_err(r#"foo~"x""#, 4, "expected an operator");
    check_err(r#"foo="x"#, 5, "no closing");
    check_err(r#"foo=~"(""#, 6, "invalid regex for label `foo`");
    check_err(r#"{a="b""#, 1, "never closed");
    check_err(r#"a="b" c="d""#, 7, "expected `,`");
    check_err(r#"{a="b" c="d"}"#, 8, "expected `,` or `}`");
    check_err(r#"a=b"c""#, 4, "wrap the value in double quotes");
    check_err("a==b", 3, "wrap the value in double quotes");
    check_err(r#"a="b"}"#, 6, "no `{` to close");
    check_err(r#"a="b",,"#, 7, "expected a label name");
    check_err(r#"ä="x""#, 1, "expected a label name");
    check_err(r#"a="ä", 9"#, 8, "expected a label name");
    // A regex that would escape the anchoring group is rejected, quoted or not.
    check_err("a=~x)|(y", 4, "invalid regex");
    check_err(r#"a=~"x)|(.*""#, 4, "invalid regex");
}

#[test]
fn single_matcher_parsing_requires_exactly_one() {
    assert!("a=b".parse::<Matcher>().is_ok());
    assert!("{a=b}".parse::<Matcher>().is_ok());
    assert!(matches!(
        "".parse::<Matcher>(),
        Err(MatcherError::Syntax { .. })
    ));
    assert!(matches!(
        "a=b,c=d".parse::<Matcher>(),
        Err(MatcherError::Syntax { .. })
    ));
}

#[test]
fn programmatic_construction_validates() {
    assert_eq!(
        Matcher::new("9lives", MatchOp::Eq, "x"),
        Err(MatcherError::InvalidName {
            name: "9lives".to_string()
        })
    );
    match Matcher::new("a", MatchOp::Re, "[") {
        Err(MatcherError::InvalidRegex { name, reason }) => {
            assert_eq!(name, "a");
            assert!(!reason.contains('\n'), "one-line reason: {reason:?}");
        }
        other => panic!("expected an invalid regex, got {other:?}"),
    }
    let m = Matcher::new("a", MatchOp::Ne, "x\"y").expect("valid");
    assert_eq!(m.to_string(), r#"a!="x\"y""#);
}

#[test]
fn case_insensitive_and_perl_classes_work() {
    let m: Matcher = r#"env=~"(?i)prod-\d+""#.parse().expect("parses");
    assert!(m.matches_value("PROD-12"));
    assert!(m.matches_value("prod-3"));
    assert!(!m.matches_value("staging-3"));
}
