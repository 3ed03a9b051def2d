//! The Helm chart's Grafana dashboard and alert rules query only metrics `/metrics` exports: a
//! metric renamed or dropped here fails this test instead of leaving an empty panel or an alert
//! that can never fire.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::helpers::{FIXTURE_ACCOUNT, FIXTURE_EMAIL, FIXTURE_SESSION, STANDARD_PRICE, fixture, spawn_app};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/helm/credits/dashboards/credits.json"
);
const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/helm/credits/rules/credits.rules.yaml"
);

/// Series of other exporters the rules read (kube-state-metrics).
const EXTERNAL: &[&str] = &["kube_pod_status_ready", "kube_pod_status_phase"];

/// PromQL words that are neither functions (those are followed by `(`) nor metric names:
/// operators, modifiers and aggregations (`sum by (le) (…)` puts `by`, not `(`, after `sum`).
const KEYWORDS: &str = "and or unless by without on ignoring group_left group_right offset bool inf nan \
    sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio";

/// Keywords followed by a list of label names in parentheses.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names a PromQL expression selects. Skipped: strings, label matchers `{…}`, ranges
/// `[…]`, label lists of `by (…)` and the like, numbers and durations, Grafana variables
/// (`$pod`) and Helm template actions (`{{ … }}`), functions and aggregations (a name before
/// `(`), keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut text = expr.to_owned();
    while let Some(start) = text.find("{{") {
        let end = text[start..].find("}}").map_or(text.len(), |i| start + i + 2);
        text.replace_range(start..end, " ");
    }
    let chars: Vec<char> = text.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // From an opening quote: the index after the closing one.
    let skip_string = |i: usize| {
        let mut j = i + 1;
        while j < chars.len() && chars[j] != chars[i] {
            j += usize::from(chars[j] == '\\') + 1;
        }
        j + 1
    };
    // From an opening bracket: the index after its `close`, strings inside skipped.
    let skip_to = |i: usize, close: char| {
        let mut j = i + 1;
        while j < chars.len() && chars[j] != close {
            j = if matches!(chars[j], '"' | '\'' | '`') {
                skip_string(j)
            } else {
                j + 1
            };
        }
        j + 1
    };
    let next_non_space = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => i = skip_to(i, '}'),
            '[' => i = skip_to(i, ']'),
            '"' | '\'' | '`' => i = skip_string(i),
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let after = next_non_space(i);
                let call = chars.get(after) == Some(&'(');
                if LABEL_LISTS.contains(&word.as_str()) && call {
                    i = skip_to(after, ')');
                } else if !call && !KEYWORDS.split_whitespace().any(|k| k.eq_ignore_ascii_case(&word)) {
                    names.insert(word);
                }
            }
            // numbers, durations (15m) and variables ($__rate_interval)
            c if c.is_ascii_digit() || c == '$' || c == '.' => {
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every query of the dashboard: the panels' `expr`s and the variables' `label_values(…)`
/// selectors.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", Value::String(expr)) => out.push(expr.clone()),
                        _ => walk(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut queries = Vec::new();
    walk(&dashboard["panels"], &mut queries);
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        let query = match &variable["query"] {
            Value::Object(query) => query.get("query").and_then(Value::as_str),
            query => query.as_str(),
        };
        // label_values(<selector>, <label>): the selector only
        if let Some(args) = query.and_then(|q| q.strip_prefix("label_values(")?.strip_suffix(')'))
            && let Some((selector, _label)) = args.rsplit_once(',')
        {
            queries.push(selector.to_owned());
        }
    }
    queries
}

/// The `expr:` of every rule in the rules template: one line, or the block under `expr: |`.
fn rule_exprs(rules: &str) -> Vec<String> {
    let indent = |line: &str| line.len() - line.trim_start().len();
    let lines: Vec<&str> = rules.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            let mut block = String::new();
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > indent(line)) {
                block.push_str(lines[i]);
                block.push('\n');
                i += 1;
            }
            exprs.push(block);
        } else {
            exprs.push(rest.to_owned());
        }
    }
    exprs
}

/// The sample names `/metrics` exports: every series it shows, and for each family (`# TYPE`,
/// also one without a series yet) the names Prometheus stores: `_total` of a counter, `_bucket`,
/// `_sum` and `_count` of a histogram.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(family) = line.strip_prefix("# TYPE ") {
            let mut parts = family.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next().filter(|name| !name.is_empty())
        {
            names.insert(name.to_owned());
        }
    }
    names
}

#[test]
fn metric_names_skip_labels_ranges_functions_and_template_actions() {
    let expr = r#"histogram_quantile(0.95, sum by (method, le) (rate(a_bucket{code!="OK", pod=~"$pod"}[$__rate_interval])))
        / ignoring (state) b{ {{- $m }}} offset 15m and on (namespace, pod) kube_c == 1 > {{ .ratio }}"#;
    let want: BTreeSet<String> = ["a_bucket", "b", "kube_c"].map(String::from).into();
    assert_eq!(metric_names(expr), want);
}

#[tokio::test]
async fn the_charts_dashboard_and_alert_rules_query_only_exported_metrics() {
    // A little of everything: an RPC answered OK and one NOT_FOUND, a webhook that credits (a
    // ledger entry, the writer), one refused for its signature, a hold. A labelled family shows
    // on /metrics only once it has a series.
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.mock_line_items(FIXTURE_SESSION).await;
    app.purchase(FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE)
        .await
        .expect("purchase");
    app.balance("nobody").await.expect_err("unknown account");
    let delivered = app
        .post_webhook(&fixture("checkout_session_completed.json"))
        .await;
    assert_eq!(delivered.status(), 200);
    let forged = app.post_webhook_with("{}", Some("t=1,v1=00".into())).await;
    assert_eq!(forged.status(), 400);
    app.reserve(FIXTURE_ACCOUNT, 5, "monitoring", 60)
        .await
        .expect("reserve");
    let exported = exported(&app.metrics_text().await);

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).expect("read the dashboard"))
            .expect("the dashboard is JSON");
    let rules = std::fs::read_to_string(RULES).expect("read the rules");
    let rule_exprs = rule_exprs(&rules);
    assert_eq!(
        rule_exprs.len(),
        rules.matches("- alert:").count(),
        "one expr per alert in {RULES}"
    );

    // metric name → where it is used
    let mut used: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (source, queries) in [
        ("dashboard", dashboard_queries(&dashboard)),
        ("rules", rule_exprs),
    ] {
        assert!(!queries.is_empty(), "no queries found in the {source}");
        for name in queries.iter().flat_map(|query| metric_names(query)) {
            used.entry(name).or_default().insert(source);
        }
    }
    assert!(used.len() >= 15, "too few metric names found: {used:?}");
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !exported.contains(*name) && !EXTERNAL.contains(&name.as_str()))
        .map(|(name, sources)| {
            format!(
                "{name} (in the {})",
                Vec::from_iter(sources.iter().copied()).join(" and ")
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exported by /metrics: {}\nexported: {exported:?}",
        missing.join(", ")
    );
}
