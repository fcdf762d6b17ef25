//! JUnit XML summaries.
//!
//! Test tools disagree on almost everything in JUnit XML except its skeleton: a
//! `<testsuites>` or `<testsuite>` root, suites nested to any depth, and `<testcase>`
//! elements whose children say how they ended (`<failure>`, `<error>`, `<skipped>`). This
//! module counts test cases from that skeleton only; suite-level `tests=`/`failures=`
//! attributes are ignored because tools fill them inconsistently. Everything else
//! (`<system-out>`, `<properties>`, surefire's `<flakyFailure>`) is skipped.
//!
//! Malformed XML is an error that says where (line and column), never a panic.

use std::io;
use std::path::{Path, PathBuf};

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use crate::walk::{self, Matcher, Mode};

/// At most this many failing test names are kept in [`JunitSummary::failing`].
pub const MAX_FAILING: usize = 100;

/// Reports larger than this are refused rather than read into memory.
pub const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

/// Counts of test cases by result.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JunitSummary {
    /// Test cases without failure, error or skip.
    pub passed: u64,
    /// Test cases with a `<failure>` or an `<error>`.
    pub failed: u64,
    /// Test cases with `<skipped>` (and no failure).
    pub skipped: u64,
    /// Names of failing cases, `classname.name` (or `name` without a class), in document
    /// order, at most [`MAX_FAILING`].
    pub failing: Vec<String>,
}

impl JunitSummary {
    /// Adds `other`'s counts and failing names (keeping the cap).
    pub fn merge(&mut self, other: JunitSummary) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        let room = MAX_FAILING.saturating_sub(self.failing.len());
        self.failing.extend(other.failing.into_iter().take(room));
    }

    /// Total number of test cases.
    pub fn total(&self) -> u64 {
        self.passed + self.failed + self.skipped
    }
}

/// Errors reading JUnit reports.
#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    /// The XML is not well formed.
    #[error(
        "line {line}, column {column}: {message}; make the test tool write well-formed JUnit XML"
    )]
    Malformed {
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The document is XML but not JUnit.
    #[error(
        "not a JUnit report: the root element is <{found}>, expected <testsuites> or <testsuite>; point the report pattern at JUnit XML files only"
    )]
    NotJunit {
        /// The root element's name.
        found: String,
    },
    /// An error in one report file.
    #[error("{path}: {source}")]
    InFile {
        /// The report, relative to the workspace.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<JunitError>,
    },
    /// A report could not be read.
    #[error("could not read {path}: {source}; check the file's permissions")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A report is too large to summarise.
    #[error(
        "{path} is {bytes} bytes, more than the {MAX_REPORT_BYTES} byte limit; split the report or narrow the pattern"
    )]
    TooLarge {
        /// The report.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// A report pattern is not a usable relative glob.
    #[error("invalid report pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// Why it was refused.
        reason: String,
    },
}

/// A test case being read.
struct Case {
    name: String,
    classname: String,
    failed: bool,
    skipped: bool,
    /// Element depth of the `<testcase>` itself.
    depth: usize,
}

/// Parses one JUnit XML document.
pub fn parse_junit(xml: &str) -> Result<JunitSummary, JunitError> {
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut summary = JunitSummary::default();
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut case: Option<Case> = None;
    let at = |offset: u64, message: String| {
        let (line, column) = line_column(xml, offset);
        JunitError::Malformed {
            line,
            column,
            message,
        }
    };
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(err) => return Err(at(reader.error_position(), err.to_string())),
        };
        let position = reader.buffer_position();
        match event {
            Event::Start(ref tag) | Event::Empty(ref tag) => {
                let is_empty = matches!(event, Event::Empty(_));
                let name = local_name(tag);
                if depth == 0 {
                    if seen_root {
                        return Err(at(position, format!("a second root element <{name}>")));
                    }
                    seen_root = true;
                    if name != "testsuites" && name != "testsuite" {
                        return Err(JunitError::NotJunit { found: name });
                    }
                }
                match (&mut case, name.as_str()) {
                    (None, "testcase") => {
                        let (name, classname) =
                            case_names(tag).map_err(|message| at(position, message))?;
                        case = Some(Case {
                            name,
                            classname,
                            failed: false,
                            skipped: false,
                            depth,
                        });
                    }
                    (Some(open), "failure" | "error") if depth == open.depth + 1 => {
                        open.failed = true;
                    }
                    (Some(open), "skipped") if depth == open.depth + 1 => open.skipped = true,
                    _ => {}
                }
                if is_empty {
                    finish_if_closed(&mut case, depth, &mut summary);
                } else {
                    depth += 1;
                }
            }
            Event::End(_) => {
                // check_end_names guarantees the end tag matches an open element.
                depth = depth.saturating_sub(1);
                finish_if_closed(&mut case, depth, &mut summary);
            }
            Event::Eof => {
                if !seen_root {
                    return Err(at(position, "the document has no root element".to_owned()));
                }
                if depth != 0 {
                    return Err(at(
                        position,
                        "the document ends before its elements are closed (truncated report?)"
                            .to_owned(),
                    ));
                }
                return Ok(summary);
            }
            _ => {}
        }
    }
}

/// Records the open case if it was the element just closed at `depth`.
fn finish_if_closed(case: &mut Option<Case>, depth: usize, summary: &mut JunitSummary) {
    if case.as_ref().is_none_or(|c| c.depth != depth) {
        return;
    }
    let Some(done) = case.take() else { return };
    if done.failed {
        summary.failed += 1;
        if summary.failing.len() < MAX_FAILING {
            summary.failing.push(if done.classname.is_empty() {
                done.name
            } else {
                format!("{}.{}", done.classname, done.name)
            });
        }
    } else if done.skipped {
        summary.skipped += 1;
    } else {
        summary.passed += 1;
    }
}

fn local_name(tag: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(tag.local_name().as_ref()).into_owned()
}

/// Reads `name` and `classname` of a `<testcase>`.
fn case_names(tag: &BytesStart<'_>) -> Result<(String, String), String> {
    let mut name = String::new();
    let mut classname = String::new();
    for attr in tag.attributes() {
        let attr = attr.map_err(|err| format!("bad attribute in <testcase>: {err}"))?;
        let slot = match attr.key.local_name().as_ref() {
            b"name" => &mut name,
            b"classname" => &mut classname,
            _ => continue,
        };
        *slot = attr
            .unescape_value()
            .map_err(|err| format!("bad attribute value in <testcase>: {err}"))?
            .into_owned();
    }
    Ok((name, classname))
}

/// 1-based line and character column of byte `offset` in `text`.
fn line_column(text: &str, offset: u64) -> (usize, usize) {
    let offset = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    let bytes = &text.as_bytes()[..offset];
    let line_start = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    let line = bytes.iter().filter(|b| **b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&bytes[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Finds the reports under `root` matching `patterns` (globs relative to root, `*` does not
/// cross `/`, `**` does) and merges their summaries.
///
/// Patterns that match no file are not an error: the result simply counts zero tests
/// (a step that crashed before writing its report fails on its exit code instead).
/// Files are read in path order, so `failing` is deterministic.
pub fn collect_junit(root: &Path, patterns: &[String]) -> Result<JunitSummary, JunitError> {
    let matcher = Matcher::new(patterns).map_err(|bad| JunitError::Pattern {
        pattern: bad.pattern,
        reason: bad.reason,
    })?;
    let files = walk::find(root, &matcher, Mode::Files).map_err(|source| JunitError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut summary = JunitSummary::default();
    for file in files {
        let io_err = |source| JunitError::Io {
            path: file.abs.clone(),
            source,
        };
        let bytes = std::fs::metadata(&file.abs).map_err(io_err)?.len();
        if bytes > MAX_REPORT_BYTES {
            return Err(JunitError::TooLarge {
                path: file.rel,
                bytes,
            });
        }
        let raw = std::fs::read(&file.abs).map_err(io_err)?;
        let text = String::from_utf8_lossy(&raw);
        let one = parse_junit(&text).map_err(|err| JunitError::InFile {
            path: file.rel.clone(),
            source: Box::new(err),
        })?;
        summary.merge(one);
    }
    Ok(summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(xml: &str, passed: u64, failed: u64, skipped: u64, failing: &[&str]) {
        let summary = parse_junit(xml).unwrap();
        assert_eq!(
            (summary.passed, summary.failed, summary.skipped),
            (passed, failed, skipped),
            "{xml}"
        );
        assert_eq!(summary.failing, failing);
    }

    #[test]
    fn pytest_report() {
        check(
            r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="0.05" timestamp="2026-11-24T10:00:00" hostname="ci"><testcase classname="tests.test_math" name="test_add" time="0.001" /><testcase classname="tests.test_math" name="test_div" time="0.002"><failure message="assert 1 == 2">def test_div():
&gt;       assert 1 == 2
E       assert 1 == 2</failure></testcase><testcase classname="tests.test_math" name="test_skip" time="0.000"><skipped type="pytest.skip" message="not on linux">tests/test_math.py:12: not on linux</skipped></testcase><testcase classname="tests.test_io" name="test_fixture" time="0.000"><error message="failed on setup with &quot;FileNotFoundError&quot;">fixture error</error></testcase><testcase classname="tests.test_io" name="test_ok[param-&lt;1&gt;]" time="0.001"><system-out>hello</system-out></testcase></testsuite></testsuites>"#,
            2,
            2,
            1,
            &["tests.test_math.test_div", "tests.test_io.test_fixture"],
        );
    }

    #[test]
    fn nextest_report() {
        check(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="3" failures="1" errors="0" uuid="45c50cc6" timestamp="2026-11-24T10:00:00.000+00:00" time="0.120">
    <testsuite name="sluice-core" tests="3" disabled="0" errors="0" failures="1">
        <testcase name="plan::tests::starts_roots" classname="sluice-core" timestamp="2026-11-24T10:00:00.000+00:00" time="0.010">
        </testcase>
        <testcase name="plan::tests::waits_for_gate" classname="sluice-core" time="0.011">
            <failure message="thread panicked" type="test failure">thread 'main' panicked at src/plan.rs:10:5</failure>
            <system-out></system-out>
            <system-err>note: run with `RUST_BACKTRACE=1`</system-err>
        </testcase>
        <testcase name="plan::tests::ignored" classname="sluice-core" time="0.000">
            <skipped/>
        </testcase>
    </testsuite>
</testsuites>
"#,
            1,
            1,
            1,
            &["sluice-core.plan::tests::waits_for_gate"],
        );
    }

    #[test]
    fn jest_report() {
        check(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="jest tests" tests="3" failures="1" errors="0" time="1.2">
  <testsuite name="Button" errors="0" failures="1" skipped="1" timestamp="2026-11-24T10:00:00" time="0.8" tests="3">
    <testcase classname="Button renders" name="Button renders" time="0.01">
    </testcase>
    <testcase classname="Button clicks" name="Button clicks" time="0.02">
      <failure>Error: expect(received).toBe(expected) // Object.is equality</failure>
    </testcase>
    <testcase classname="Button todo" name="Button todo" time="0">
      <skipped/>
    </testcase>
  </testsuite>
</testsuites>"#,
            1,
            1,
            1,
            &["Button clicks.Button clicks"],
        );
    }

    #[test]
    fn surefire_report_with_flaky_and_properties() {
        check(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="https://maven.apache.org/surefire/maven-surefire-plugin/xsd/surefire-test-report-3.0.xsd" version="3.0" name="com.example.AppTest" time="0.04" tests="4" errors="1" skipped="1" failures="0">
  <properties>
    <property name="java.version" value="21"/>
  </properties>
  <testcase name="testOk" classname="com.example.AppTest" time="0.001"/>
  <testcase name="testFlaky" classname="com.example.AppTest" time="0.002">
    <flakyFailure message="first try" type="java.lang.AssertionError"><stackTrace>at ...</stackTrace></flakyFailure>
  </testcase>
  <testcase name="testBoom" classname="com.example.AppTest" time="0.003">
    <error message="boom" type="java.lang.IllegalStateException"><![CDATA[java.lang.IllegalStateException: boom
	at com.example.AppTest.testBoom(AppTest.java:20)]]></error>
  </testcase>
  <testcase name="testLater" classname="com.example.AppTest" time="0">
    <skipped message="@Disabled"/>
  </testcase>
</testsuite>"#,
            2,
            1,
            1,
            &["com.example.AppTest.testBoom"],
        );
    }

    #[test]
    fn nested_suites_and_names_without_class() {
        check(
            "<testsuites><testsuite><testsuite><testcase name=\"a\"/><testcase name=\"b\"><failure/></testcase></testsuite></testsuite><testsuite/></testsuites>",
            1,
            1,
            0,
            &["b"],
        );
        check("<testsuite/>", 0, 0, 0, &[]);
    }

    #[test]
    fn failing_names_are_capped() {
        let cases: String = (0..150)
            .map(|i| format!("<testcase name=\"t{i}\"><failure/></testcase>"))
            .collect();
        let summary = parse_junit(&format!("<testsuite>{cases}</testsuite>")).unwrap();
        assert_eq!(summary.failed, 150);
        assert_eq!(summary.failing.len(), MAX_FAILING);
        let mut merged = summary.clone();
        merged.merge(summary);
        assert_eq!(merged.failed, 300);
        assert_eq!(merged.failing.len(), MAX_FAILING);
        assert_eq!(merged.total(), 300);
    }

    #[test]
    fn malformed_xml_is_an_error_with_a_position() {
        for (xml, line) in [
            ("<testsuite>\n<testcase name=\"a\">\n</testsuite>", 3),
            ("<testsuite>\n  <testcase name=\"a\"/>\n", 3),
            ("", 1),
            (
                "<testsuite><testcase name=\"a\" name=\"b\"/></testsuite>",
                1,
            ),
            ("<testsuite></testsuite><testsuite/>", 1),
            ("<testsuite><testcase name=\"&bogus;\"/></testsuite>", 1),
            ("<testsuite>\n<testcase name='x' <</testsuite>", 2),
        ] {
            match parse_junit(xml) {
                Err(JunitError::Malformed { line: got, .. }) => assert_eq!(got, line, "{xml}"),
                other => panic!("{xml:?}: expected a malformed error, got {other:?}"),
            }
        }
        assert!(matches!(
            parse_junit("<html><body/></html>"),
            Err(JunitError::NotJunit { found }) if found == "html"
        ));
    }

    #[test]
    fn never_panics_on_truncations() {
        let xml = r#"<?xml version="1.0"?><testsuites><testsuite name="s"><testcase classname="c" name="n&amp;m"><failure message="x">ü</failure></testcase></testsuite></testsuites>"#;
        for end in 0..=xml.len() {
            if let Some(prefix) = xml.get(..end) {
                let _ = parse_junit(prefix);
            }
        }
        assert_eq!(parse_junit(xml).unwrap().failing, ["c.n&m"]);
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncdé\nx", 7), (2, 4));
        assert_eq!(line_column("", 5), (1, 1));
    }
}
