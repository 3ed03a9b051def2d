//! Settings: defaults, bad values named, secrets never shown.

use std::collections::HashMap;

use super::*;

fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    Settings::from_lookup(|name| map.get(name).cloned())
}

#[test]
fn defaults_match_the_documented_table() {
    let s = settings(&[]).expect("defaults are valid");
    assert_eq!(s.app_env, AppEnv::Development);
    assert_eq!(s.grpc_addr.to_string(), "0.0.0.0:50051");
    assert_eq!(s.http_addr.to_string(), "0.0.0.0:8080");
    assert_eq!(s.database_url.expose_secret(), "sqlite://credits.db?mode=rwc");
    assert_eq!(s.stripe.api_base.as_str(), "https://api.stripe.com/");
    assert_eq!(s.frontend_url.as_str(), "http://localhost:3000/");
    assert!(s.migrate_on_start);
    assert_eq!(s.log_format, LogFormat::Pretty);
}

#[test]
fn a_bad_value_names_its_variable() {
    assert_eq!(
        settings(&[("GRPC_ADDR", "nope")]).err().map(|e| e.var),
        Some("GRPC_ADDR")
    );
    assert_eq!(
        settings(&[("APP_ENV", "staging")]).err().map(|e| e.var),
        Some("APP_ENV")
    );
    assert_eq!(
        settings(&[("FRONTEND_URL", "ftp://x")]).err().map(|e| e.var),
        Some("FRONTEND_URL")
    );
    assert_eq!(
        settings(&[("STRIPE_API_BASE", "::")]).err().map(|e| e.var),
        Some("STRIPE_API_BASE")
    );
    assert_eq!(
        settings(&[("MIGRATE_ON_START", "maybe")]).err().map(|e| e.var),
        Some("MIGRATE_ON_START")
    );
}

#[test]
fn redirect_origins_default_to_the_frontend_and_production_wants_https() {
    let origins = |vars: &[(&str, &str)]| settings(vars).map(|s| s.redirects.to_string());
    let frontend = [("FRONTEND_URL", "https://App.Example.com/billing")];
    assert_eq!(
        origins(&frontend).ok().as_deref(),
        Some("https://app.example.com")
    );
    let listed = [(
        "ALLOWED_REDIRECT_ORIGINS",
        "https://a.test:443, ,https://b.test:8443",
    )];
    assert_eq!(
        origins(&listed).ok().as_deref(),
        Some("https://a.test,https://b.test:8443")
    );
    for bad in ["a.test", "https://a.test/path", " , ", "https://a.test,*"] {
        let err = settings(&[("ALLOWED_REDIRECT_ORIGINS", bad)])
            .err()
            .map(|e| e.var);
        assert_eq!(err, Some("ALLOWED_REDIRECT_ORIGINS"), "{bad}");
    }
    let production = [
        ("APP_ENV", "production"),
        ("STRIPE_SECRET_KEY", "sk_live_x"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut vars = production.to_vec();
        vars.push(extra);
        settings(&vars).err().map(|e| e.var)
    };
    assert_eq!(
        with(("FRONTEND_URL", "http://app.example.com")),
        Some("FRONTEND_URL")
    );
    assert_eq!(
        with(("ALLOWED_REDIRECT_ORIGINS", "http://app.example.com")),
        Some("ALLOWED_REDIRECT_ORIGINS")
    );
    // The default FRONTEND_URL is loopback, so production starts without setting either.
    assert_eq!(with(("FRONTEND_URL", "http://localhost:3000")), None);
    assert_eq!(with(("ALLOWED_REDIRECT_ORIGINS", "http://[::1]:3000")), None);
}

#[test]
fn durations_take_units() {
    assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
    assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
    assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("0s").is_err());
    assert!(parse_duration("5w").is_err());
    assert_eq!(
        settings(&[("RECONCILE_INTERVAL", "often")]).err().map(|e| e.var),
        Some("RECONCILE_INTERVAL")
    );
}

#[test]
fn production_serving_requires_stripe_secrets_other_commands_do_not() {
    let bare = settings(&[("APP_ENV", "production")]).expect("migrate and listings need no Stripe");
    assert_eq!(
        bare.check_stripe_for_serving().err().map(|e| e.var),
        Some("STRIPE_SECRET_KEY")
    );
    assert_eq!(
        bare.check_stripe_key().err().map(|e| e.var),
        Some("STRIPE_SECRET_KEY")
    );
    let key_only = settings(&[("APP_ENV", "production"), ("STRIPE_SECRET_KEY", "sk_live_x")]).expect("valid");
    assert_eq!(
        key_only.check_stripe_for_serving().err().map(|e| e.var),
        Some("STRIPE_WEBHOOK_SECRET")
    );
    assert!(key_only.check_stripe_key().is_ok());
    let ok = settings(&[
        ("APP_ENV", "production"),
        ("STRIPE_SECRET_KEY", "sk_live_x"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_a, whsec_b"),
    ])
    .expect("complete production settings");
    assert!(ok.check_stripe_for_serving().is_ok());
    assert_eq!(ok.stripe.webhook_secrets.len(), 2);
    assert_eq!(ok.log_format, LogFormat::Json);
}

#[test]
fn a_bad_rust_log_is_refused_by_name_and_the_default_quiets_dependencies() {
    let err = settings(&[("RUST_LOG", "info,credits=loud")])
        .err()
        .map(|e| e.var);
    assert_eq!(err, Some("RUST_LOG"));
    let default = settings(&[]).expect("valid");
    assert_eq!(default.log_filter, crate::config::DEFAULT_LOG_FILTER);
    assert!(default.log_filter.contains("sqlx=warn"));
    let set = settings(&[("RUST_LOG", "debug,h2=info")]).expect("valid");
    assert_eq!(set.log_filter, "debug,h2=info");
}

#[test]
fn the_start_up_line_names_every_setting_the_readme_lists() {
    let readme = include_str!("../../README.md");
    let table = &readme[readme
        .find("| Variable | Default | Meaning |")
        .expect("configuration table")..];
    let table = &table[..table.find("\n\n").unwrap_or(table.len())];
    let printed = settings(&[]).expect("valid").to_string();
    let mut names = 0;
    for row in table.lines().skip(2) {
        for name in row.split('|').nth(1).unwrap_or("").split(',') {
            let name = name.trim().trim_matches('`');
            if name.is_empty() {
                continue;
            }
            names += 1;
            assert!(
                printed.contains(&format!("{name}=")),
                "{name} missing from: {printed}"
            );
        }
    }
    assert!(names >= 40, "only {names} settings in the README table");
}

#[test]
fn display_never_shows_secrets() {
    let s = settings(&[
        ("STRIPE_SECRET_KEY", "sk_test_supersecret"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_supersecret"),
        ("DATABASE_URL", "postgres://app:hunter2@db/credits"),
        ("GRPC_AUTH_TOKENS", "tok_supersecret"),
        (
            "NOTIFY_WEBHOOK_URL",
            "https://hooks.example.com/credits?token=supersecret",
        ),
        ("NOTIFY_WEBHOOK_SECRET", "notify_supersecret"),
    ])
    .expect("valid");
    let shown = s.to_string();
    assert!(shown.contains("NOTIFY_WEBHOOK_SECRET=set"), "{shown}");
    assert!(!shown.contains("supersecret"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// The start-up line for these settings, asserted free of `secret`.
fn shown_without(vars: &[(&str, &str)], secret: &str) -> String {
    let shown = settings(vars).expect("valid").to_string();
    assert!(!shown.contains(secret), "{secret} shown in {shown}");
    shown
}

#[test]
fn database_passwords_are_masked_in_every_form_sqlx_accepts() {
    let cases = [
        (
            "postgres://app:hunter2@db/credits",
            "postgres://app:****@db/credits",
        ),
        (
            "postgresql://app:hunter2@db:5432/credits",
            "postgresql://app:****@db:5432/credits",
        ),
        (
            "postgres://app:hunter%32%40x@db/credits",
            "postgres://app:****@db/credits",
        ),
        (
            "postgres://app@db/credits?password=hunter2",
            "postgres://app@db/credits?password=****",
        ),
        (
            "postgres://app@db/credits?sslmode=require&password=hunter2&application_name=credits",
            "postgres://app@db/credits?sslmode=require&password=****&application_name=credits",
        ),
        (
            "postgres://app@db/credits?sslkey=/etc/k.pem&pass%77ord=hunter%32",
            "postgres://app@db/credits?sslkey=/etc/k.pem&pass%77ord=****",
        ),
        (
            "postgres://app@db/credits?password",
            "postgres://app@db/credits?password=****",
        ),
    ];
    for (url, want) in cases {
        let shown = shown_without(&[("DATABASE_URL", url)], "hunter");
        assert!(shown.contains(&format!("DATABASE_URL={want} ")), "{url}: {shown}");
    }
    for url in [
        "sqlite://credits.db?mode=rwc",
        "sqlite:credits.db",
        "sqlite::memory:",
    ] {
        let shown = shown_without(&[("DATABASE_URL", url)], "****");
        assert!(shown.contains(&format!("DATABASE_URL={url} ")), "{url}: {shown}");
    }
    // What cannot be parsed cannot be masked precisely, so none of it is shown.
    let shown = shown_without(&[("DATABASE_URL", "postgres://app:hunter2@db:port/x")], "hunter");
    assert!(shown.contains("DATABASE_URL=postgres://**** "), "{shown}");
}

#[test]
fn database_secrets_that_sqlx_would_log_instead_of_reading_are_refused() {
    for url in [
        "postgres://app@db/credits?sslkey=/etc/k.pem&sslpassword=hunter2",
        "postgresql://app@db/credits?PASSWORD=hunter2",
        "postgres://app@db/credits?token=hunter2",
    ] {
        let err = settings(&[("DATABASE_URL", url)]).err().expect("refused");
        assert_eq!(err.var, "DATABASE_URL", "{url}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
    assert_eq!(
        redact_url(
            "postgres://db/c?sslpassword=hunter2&sslkey=/k.pem",
            UserName::Shown
        ),
        "postgres://db/c?sslpassword=****&sslkey=/k.pem"
    );
}

#[test]
fn credentials_in_other_urls_are_masked() {
    let shown = shown_without(
        &[
            ("STRIPE_API_BASE", "https://user:hunter2@stripe.internal"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://hunter2@collector:4317"),
            ("FRONTEND_URL", "https://app.example.com/?token=hunter2"),
        ],
        "hunter2",
    );
    assert!(
        shown.contains("STRIPE_API_BASE=https://****:****@stripe.internal/ "),
        "{shown}"
    );
    assert!(
        shown.contains("OTEL_EXPORTER_OTLP_ENDPOINT=http://****@collector:4317/"),
        "{shown}"
    );
    assert!(
        shown.contains("FRONTEND_URL=https://app.example.com/?token=**** "),
        "{shown}"
    );
    // Nor does the line that refuses a bad value.
    for (var, bad) in [
        ("ALLOWED_REDIRECT_ORIGINS", "https://u:hunter2@a.test"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:hunter2@collector:port"),
    ] {
        let err = settings(&[(var, bad)]).err().expect("refused");
        assert_eq!(err.var, var);
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

#[test]
fn the_chart_logs_like_the_binary_by_default() {
    let values = include_str!("../../helm/credits/values.yaml");
    let line = values
        .lines()
        .find_map(|l| l.trim().strip_prefix("rustLog:"))
        .expect("config.rustLog in values.yaml");
    assert_eq!(line.trim().trim_matches('"'), crate::config::DEFAULT_LOG_FILTER);
}
